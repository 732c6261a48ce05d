/**
 * One measurement in a fresh Node process, started by `bench/run.ts`:
 *
 *     node --import tsx bench/worker.ts '<Task as JSON>'
 *
 * prints one JSON `Measurement` on the last stdout line. A fresh process per task keeps V8's
 * JIT state of one access pattern (single rows vs batches, native vs ONNX) from leaking into
 * another; `native-switch` measures exactly that leak on purpose.
 */
import { readFileSync } from 'node:fs';
import type { RawRow } from '../src/bundle/encoding.ts';
import { contributionSupport, loadModel, type ContributionExplainer, type ModelRuntime } from '../src/models/index.ts';
import { monitoringSchema } from '../src/monitor/config.ts';
import { readReference } from '../src/monitor/reference.ts';
import { ServiceMonitor } from '../src/monitor/service-monitor.ts';
import { parseXgbJson, parseXgbModel, type XgbModel } from '../src/models/xgboost/format.ts';
import { xgboostRuntime } from '../src/models/xgboost/runtime.ts';
import { createScorer } from '../src/pipeline/score.ts';
import { loadModelBundle, median, now, readF32, writeTyped, type Measurement, type Task, type Warmup } from './common.ts';

/** Single-row calls cycle through this many distinct rows (the Python baseline does the same). */
const DISTINCT_ROWS = 1000;
/** Calls per warmup repetition for single-row tasks: small, so a cold start cannot take minutes. */
const WARMUP_CALLS = 1000;

let sink = 0;

interface Warmed {
  reps: number[];
  ms: number;
  settled: boolean;
}

/** Runs `rep` (returns ns per row) until its figures settle (see `Warmup`); returns each rep's figure. */
async function warm(rep: () => number | Promise<number>, policy: Warmup): Promise<Warmed> {
  const reps: number[] = [];
  const start = now();
  for (;;) {
    reps.push(await rep());
    const ms = (now() - start) / 1e6;
    if (ms >= policy.minMs && reps.length >= 6) {
      const last = reps.slice(-5);
      if (Math.max(...last) <= 1.15 * Math.min(...last)) return { reps, ms, settled: true };
    }
    if (ms >= policy.maxMs) return { reps, ms, settled: false };
  }
}

async function timed(rep: () => number | Promise<number>, reps: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < reps; i++) out.push(await rep());
  return out;
}

function rowViews(x: Float32Array, width: number): Float32Array[] {
  const n = Math.min(DISTINCT_ROWS, x.length / width);
  return Array.from({ length: n }, (_, i) => x.subarray(i * width, (i + 1) * width));
}

function syncSingle(predict: (x: Float32Array, rows: number) => Float64Array, views: Float32Array[]) {
  return (calls: number) => (): number => {
    const n = views.length;
    let s = 0;
    const t0 = now();
    for (let i = 0; i < calls; i++) s += predict(views[i % n], 1)[0];
    const dt = now() - t0;
    sink += s;
    return dt / calls;
  };
}

function syncBatch(predict: (x: Float32Array, rows: number) => Float64Array, x: Float32Array, rows: number, keep: { out?: Float64Array }) {
  return (): number => {
    const t0 = now();
    const out = predict(x, rows);
    const dt = now() - t0;
    keep.out = out;
    return dt / rows;
  };
}

/**
 * Evaluator comparison (bench/evaluator_lab.ts `table`): a native task may name the XGBoost
 * evaluator, and reshape the forest for a size sweep (first `maxTrees` trees; the trees
 * repeated `repeatTrees` times). The runtime is then built from `modelJson` directly, so no
 * other evaluator is compiled in the process.
 */
interface EvaluatorChoice {
  evaluator?: 'compiled' | 'flat' | 'auto';
  modelJson?: string;
  maxTrees?: number;
  repeatTrees?: number;
}

async function nativeModel(task: { bundle: string } & EvaluatorChoice): Promise<ModelRuntime> {
  if (!task.evaluator) return (await loadModelBundle(task.bundle)).model;
  let model: XgbModel = parseXgbModel(parseXgbJson(readFileSync(task.modelJson ?? `${task.bundle}/model.json`, 'utf8')));
  let trees = model.trees.slice(0, task.maxTrees ?? model.trees.length);
  if (task.repeatTrees && task.repeatTrees > 1) trees = Array.from({ length: task.repeatTrees }, () => trees).flat();
  if (trees.length !== model.trees.length) {
    if (model.treeWeights) throw new Error('maxTrees / repeatTrees: gbtree models only');
    model = { ...model, trees };
  }
  return xgboostRuntime(model, { evaluator: task.evaluator });
}

function explainerOf(model: ModelRuntime): ContributionExplainer {
  const support = contributionSupport(model);
  if (!support.exact) throw new Error(`no exact contributions: ${support.reason}`);
  return support.explainer();
}

/** A golden file's rows (JSON lines of {row, expected}). */
function goldenRows(file: string): RawRow[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { row: RawRow }).row);
}

function nativeOf(model: ModelRuntime): (x: Float32Array, rows: number) => Float64Array {
  const p = model.predictSync;
  if (!p) throw new Error(`model format ${model.format} has no predictSync`);
  return p;
}

async function run(task: Task & EvaluatorChoice): Promise<Measurement> {
  const t0 = now();
  const extra: Record<string, unknown> = {};
  let firstCallNs = NaN;
  let warmed: Warmed = { reps: [], ms: 0, settled: false };
  let repsNsPerRow: number[] = [];
  let rows = 0;
  // What every case reports, once it has filled in the figures above.
  const measured = (loadMs: number): Measurement => ({
    kind: task.kind,
    repsNsPerRow,
    medianNsPerRow: median(repsNsPerRow),
    warmupNsPerRow: warmed.reps,
    warmupMs: warmed.ms,
    settled: warmed.settled,
    firstCallNs,
    loadMs,
    rows,
    extra,
  });

  switch (task.kind) {
    case 'native-single': {
      const model = await nativeModel(task);
      const loadMs = (now() - t0) / 1e6;
      const predict = nativeOf(model);
      const views = rowViews(readF32(task.rowsFile), task.width);
      rows = views.length;
      const single = syncSingle(predict, views);
      firstCallNs = single(1)();
      warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
      repsNsPerRow = await timed(single(task.calls), task.reps);
      extra.info = model.info;
      return measured(loadMs);
    }
    case 'native-batch': {
      const model = await nativeModel(task);
      const loadMs = (now() - t0) / 1e6;
      const predict = nativeOf(model);
      const x = readF32(task.rowsFile);
      rows = x.length / task.width;
      const keep: { out?: Float64Array } = {};
      const batch = syncBatch(predict, x, rows, keep);
      firstCallNs = batch() * rows;
      warmed = await warm(batch, task.warmup);
      repsNsPerRow = await timed(batch, task.reps);
      writeTyped(task.predsOut, keep.out!);
      extra.info = model.info;
      return measured(loadMs);
    }
    case 'native-switch': {
      const model = await nativeModel(task);
      const loadMs = (now() - t0) / 1e6;
      const predict = nativeOf(model);
      const x = readF32(task.rowsFile);
      const all = x.length / task.width;
      const views = rowViews(x, task.width);
      const single = syncSingle(predict, views);
      const batch = syncBatch(predict, x, all, {});
      if (task.first === 'batch') {
        extra.firstModeWarmup = await warm(batch, task.warmup);
        warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
        repsNsPerRow = await timed(single(task.calls), task.reps);
        rows = views.length;
      } else {
        extra.firstModeWarmup = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
        warmed = await warm(batch, task.warmup);
        repsNsPerRow = await timed(batch, task.reps);
        rows = all;
      }
      extra.first = task.first;
      return measured(loadMs);
    }
    case 'pipeline-single': {
      const bundle = await loadModelBundle(task.bundle);
      const loadMs = (now() - t0) / 1e6;
      const scorer = createScorer(bundle, { fromText: false });
      const golden = readFileSync(task.jsonRowsFile, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { row: RawRow; expected: number[] });
      const raws = golden.map((g) => g.row);
      rows = raws.length;
      // Correctness of the whole path, on the golden rows the training library scored.
      let maxDiff = 0;
      let rejected = 0;
      const tFirst = now();
      for (let i = 0; i < golden.length; i++) {
        const scored = await scorer.scoreRows([raws[i]]);
        if (i === 0) firstCallNs = now() - tFirst;
        const o = scored.outcomes[0];
        if (!o.ok) {
          rejected++;
          continue;
        }
        const w = scored.rawWidth;
        if (w !== golden[i].expected.length) maxDiff = Infinity;
        for (let j = 0; j < w; j++) maxDiff = Math.max(maxDiff, Math.abs(scored.raw[o.slot * w + j] - golden[i].expected[j]));
      }
      extra.goldenMaxDiff = maxDiff;
      extra.goldenRejected = rejected;
      const single = (calls: number) => async (): Promise<number> => {
        const n = raws.length;
        let s = 0;
        const t = now();
        for (let i = 0; i < calls; i++) {
          const o = (await scorer.scoreRows([raws[i % n]])).outcomes[0];
          if (o.ok) s += o.score;
        }
        const dt = now() - t;
        sink += s;
        return dt / calls;
      };
      warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
      repsNsPerRow = await timed(single(task.calls), task.reps);
      return measured(loadMs);
    }
    case 'shap-single':
    case 'shap-batch': {
      const bundle = await loadModelBundle(task.bundle);
      const explainer = explainerOf(bundle.model);
      const loadMs = (now() - t0) / 1e6;
      extra.info = explainer.info;
      const x = readF32(task.rowsFile);
      const G = explainer.groups;
      if (task.kind === 'shap-single') {
        const views = rowViews(x, task.width);
        rows = views.length;
        const out = new Float64Array(G * (task.width + 1));
        const single = syncSingle((v, n) => explainer.contributions(v, n, out), views);
        firstCallNs = single(1)();
        warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
        repsNsPerRow = await timed(single(task.calls), task.reps);
        // The distribution of single calls, each timed on its own (the latency a decision sees).
        const each = new Float64Array(Math.min(task.calls, 20_000));
        for (let i = 0; i < each.length; i++) {
          const t = now();
          sink += explainer.contributions(views[i % views.length], 1, out)[0];
          each[i] = now() - t;
        }
        each.sort();
        extra.p50Ns = each[Math.floor(each.length / 2)];
        extra.p99Ns = each[Math.floor(each.length * 0.99)];
      } else {
        rows = Math.min(task.rows, x.length / task.width);
        const out = new Float64Array(rows * G * (task.width + 1));
        const batch = (): number => {
          const t = now();
          explainer.contributions(x, rows, out);
          return (now() - t) / rows;
        };
        firstCallNs = batch() * rows;
        warmed = await warm(batch, task.warmup);
        repsNsPerRow = await timed(batch, task.reps);
        writeTyped(task.contribsOut, out);
      }
      return measured(loadMs);
    }
    case 'shap-reasons': {
      const bundle = await loadModelBundle(task.bundle);
      const loadMs = (now() - t0) / 1e6;
      const reasons = bundle.policy?.modelReasons;
      if (!reasons) throw new Error(`${task.bundle}: the policy asks for no model reasons`);
      const scorer = createScorer(bundle, { fromText: false });
      const explainer = scorer.explainer()!;
      // Each golden row as a decision has it: encoded inputs and raw outputs, computed before timing.
      const decided = goldenRows(task.jsonRowsFile).map((row) => {
        const encoded = scorer.encode([row]);
        return { inputs: encoded.inputs, raw: scorer.predict(encoded.inputs, 1) as Float64Array };
      });
      rows = decided.length;
      const single = (calls: number) => (): number => {
        let s = 0;
        const t = now();
        for (let i = 0; i < calls; i++) {
          const d = decided[i % decided.length];
          s += reasons.rank(explainer.explain(d.inputs, 1, d.raw).values).length;
        }
        const dt = now() - t;
        sink += s;
        return dt / calls;
      };
      firstCallNs = single(1)();
      warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
      repsNsPerRow = await timed(single(task.calls), task.reps);
      return measured(loadMs);
    }
    case 'monitor-cost': {
      const bundle = await loadModelBundle(task.bundle);
      const loadMs = (now() - t0) / 1e6;
      const scorer = createScorer(bundle, { fromText: false });
      const reference = await readReference(bundle.referencePath!);
      const config = monitoringSchema.parse({ ...bundle.manifest.monitoring, contributions: { sample_every: task.sampleEvery } });
      const monitor = new ServiceMonitor({ bundle, reference, config, sinks: [], explainer: task.attribution ? scorer.explainer() : null });
      const decided = goldenRows(task.jsonRowsFile).map((row) => {
        const encoded = scorer.encode([row]);
        const raw = scorer.predict(encoded.inputs, 1) as Float64Array;
        return { row, inputs: encoded.inputs, raw, score: bundle.outputs.score(raw, 0) };
      });
      rows = task.decisions;
      // What the server does per decision: observe (sampling and copying included); then, as
      // after the answers went out, the waiting explanations and the periodic evaluation.
      const rep = (): number => {
        const t = now();
        for (let i = 0; i < task.decisions; i++) {
          const d = decided[i % decided.length];
          monitor.observeDecision(d.row, d.score, 'approve', null, undefined, { scored: { inputs: d.inputs, raw: d.raw }, contributions: null });
          if (i % 64 === 63) monitor.explainPending();
        }
        monitor.explainPending();
        return (now() - t) / task.decisions;
      };
      warmed = await warm(rep, { minMs: 1000, maxMs: 5000 });
      repsNsPerRow = await timed(rep, task.reps);
      extra.explained = monitor.evaluate().windows.count.contributions?.n ?? 0;
      return measured(loadMs);
    }
    case 'onnx-single':
    case 'onnx-batch': {
      const model = await loadModel('onnx', task.model, { input: task.input });
      const loadMs = (now() - t0) / 1e6;
      const x = readF32(task.rowsFile);
      extra.info = model.info;
      if (task.kind === 'onnx-single') {
        const views = rowViews(x, task.width);
        rows = views.length;
        const single = (calls: number) => async (): Promise<number> => {
          const n = views.length;
          let s = 0;
          const t = now();
          for (let i = 0; i < calls; i++) s += (await model.predict(views[i % n], 1))[0];
          const dt = now() - t;
          sink += s;
          return dt / calls;
        };
        firstCallNs = await single(1)();
        warmed = await warm(single(Math.min(WARMUP_CALLS, task.calls)), task.warmup);
        repsNsPerRow = await timed(single(task.calls), task.reps);
      } else {
        rows = x.length / task.width;
        let out: Float64Array | undefined;
        const batch = async (): Promise<number> => {
          const t = now();
          out = await model.predict(x, rows);
          return (now() - t) / rows;
        };
        firstCallNs = (await batch()) * rows;
        warmed = await warm(batch, task.warmup);
        repsNsPerRow = await timed(batch, task.reps);
        writeTyped(task.predsOut, out!);
      }
      await model.close?.();
      return measured(loadMs);
    }
  }
}

const task = JSON.parse(process.argv[2] ?? 'null') as (Task & EvaluatorChoice) | null;
if (!task) {
  console.error("usage: node --import tsx bench/worker.ts '<task json>' (started by bench/run.ts)");
  process.exit(2);
}
const result = await run(task);
result.extra.sink = Number.isFinite(sink) ? 1 : 0;
process.stdout.write(`${JSON.stringify(result)}\n`);
