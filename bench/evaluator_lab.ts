/**
 * Evaluator lab: measures rtml's compiled XGBoost evaluator (src/models/xgboost/compile.ts)
 * against its flat one and prototype alternatives, to back the suggestions in the benchmark
 * report with numbers. Not part of `npm run bench`; run it after `npm run bench` has written
 * the rows and predictions:
 *
 *     node --import tsx bench/evaluator_lab.ts                 # every variant, both models
 *     node --import tsx bench/evaluator_lab.ts one <case> <variant> <mode> [seconds]
 *     node --import tsx bench/evaluator_lab.ts table           # compiled vs flat through bench/worker.ts
 *
 * Variants (all exact: float32 inputs/thresholds/leaves, per-tree float32 sums in tree order):
 *   current        xgboostRuntime() as shipped (compileForest, nodesPerChunk 1500)
 *   npc=N / depth=D compileForest with { nodesPerChunk: N } / { maxCompiledDepth: D }
 *   rowfn          same generated tree expressions, but each chunk scores ONE row and has no
 *                  loop; a small driver loops chunks x rows. No on-stack replacement of the big
 *                  functions, so single-row and batch calls share one optimised code.
 *   flat           the shipped table-driven evaluator, src/models/xgboost/flat.ts (flatForest):
 *                  no code generation, all trees in flat typed arrays walked a fixed number of
 *                  branch-free steps, four trees interleaved, rows in blocks of 64. (It began here
 *                  as a prototype; `flat-rtml`, its name while both existed, still selects it.)
 *   qs / qs-int    QuickScorer (Lucchese et al., SIGIR 2015), bench/lab_quickscorer.ts: per
 *                  feature the split nodes sorted by threshold, a 32-bit leaf bitvector per tree
 *                  (trees with more leaves are walked), false nodes found by scanning each
 *                  feature's run while v >= threshold (NaN sentinel), per-feature default-right
 *                  lists for NaN, per-code lists for categorical splits; exit leaf = lowest set
 *                  bit; leaves summed in tree order with fround. qs-int compares int32 keys of
 *                  the float32 bits instead of floats. No code generated. Bit-identical to
 *                  current on the credit rows, on 5,000 random rows (10% NaN, half small
 *                  integer codes) of credit and of every test/fixtures bundle, batch and 1-row.
 *   level / treewise  bench/lab_levelwise.ts: every tree padded to the forest's depth D in heap
 *                  order (pad nodes: NaN threshold, always left; leaves replicated), one step
 *                  `i = 2i + 1 + right` with right = v >= t | (per-row code/NaN bit words AND
 *                  node masks), all trees advanced level by level (`level`) or tree by tree
 *                  (`treewise`). Bit-identical as qs (credit, large, all bundles).
 *
 * Measured 2026-11-29 (AMD EPYC Zen 5, 2 shared cores, Node 20.20; `one <case> <variant> <mode>
 * 8`, fresh process each, 3 rounds alternating variants; median of the 3 settled figures, ns per
 * row; XGBoost 1.7.4 inplace_predict one row: credit 40,040 ns, large 65,700 ns):
 *
 *   credit (200 trees, 4,048 nodes, depth 4, 159 trees categorical)
 *     variant   single (rounds)            batch 10k (rounds)         single vs current / vs xgb
 *     current   2803 (2728 2803 2851)      2310 (2203 2400 2310)      1.00x / 14.3x
 *     flat      2954 (2978 2876 2954)      2528 (3162 2528 2512)      0.95x / 13.6x
 *     qs        2797 (2778 2797 2910)      2722 (2680 2722 2766)      1.00x / 14.3x
 *     qs-int    2717 (2693 2717 2812)      2736 (2954 2688 2736)      1.03x / 14.7x
 *     level     5011 (4917 5011 5315)      4953 (4953 5083 4823)      0.56x /  8.0x
 *     treewise  4936 (one run)             4542 (one run)
 *   large (500 trees, 140,906 nodes, depth 8; every tree > 32 leaves, so qs would only walk)
 *     flat     13483 (13483 14378 13325)  11678 (11678 10736 11719)  (auto's choice) 4.9x vs xgb
 *     current  33041 (32764 36143 33041)  10787 (10586 11453 10787)
 *     level    30006 (32240 27843 30006)  28524 (27607 28524 31270)  0.45x vs flat single
 *     treewise 30966 (one run)
 *
 * Conclusion: no variant reaches the 1.3x bar, so none is shipped. Where the time goes (in-
 * process breakdowns, credit single row): the exact float32 sum alone (200 x
 * `s = fround(s + leaf)`, a cvtsd2ss/cvtss2sd/addsd dependency chain) costs ~0.4 us, a floor for
 * every JS variant (a float64 sum of the same leaves: 0.12 us). QuickScorer applies ~860 false-
 * node masks per row (696 numeric, 165 categorical; the tree walk needs only 723 node steps) and
 * its scan costs ~2.3 us: about 2.7 ns per mask in V8, vs 0.55 ns per mask for the same stores in
 * a fixed-count loop; a threshold-compare loop exit (sentinel or bounded, float or int32 keys)
 * runs 2-3x slower than a counted loop even when its trip count is fixed. The branch-free
 * level walk pays ~6 bounds-checked typed-array accesses per step (~2.7 ns a step, 800 steps on
 * credit, 4,000 on large), and its padded complete trees of depth 8 (2 MB of node records)
 * miss cache on large. compile.ts's nested ternaries, with thresholds as immediates and no
 * loads but the hoisted features, stay as fast as anything table-driven despite their
 * mispredicted branches. Getting to ~2 us on credit probably needs a fixed (not generated)
 * WebAssembly kernel (f32.add for the sum, no bounds checks per access), not tried here.
 *
 * Modes: single (1-row calls cycling 1000 rows), batch (10,000 rows per call), and
 * single-after-batch / batch-after-single (one mode warmed, the other measured, same process).
 * Each (variant, mode) runs in a fresh process for a fixed time; it reports the per-rep curve
 * and the median of the last half of the reps (the settled speed).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileForest, type ForestAccumulator } from '../src/models/xgboost/compile.ts';
import { parseXgbJson, parseXgbModel, type XgbModel, type XgbTree } from '../src/models/xgboost/format.ts';
import { flatForest } from '../src/models/xgboost/flat.ts';
import { quickScorerForest } from './lab_quickscorer.ts';
import { levelForest } from './lab_levelwise.ts';
import { objectiveFor } from '../src/models/xgboost/objectives.ts';
import { fmtNs, fmtRatio, maxAbsDiff, median, now, readF32, readF64, type Measurement, type Task } from './common.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODELS = join(ROOT, 'bench', '.models');
const CASES: Record<string, { model: string; rows: string; preds: string }> = {
  credit: { model: join(ROOT, 'examples/credit/model.json'), rows: join(MODELS, 'credit_rows.f32'), preds: join(MODELS, 'credit.xgb_preds.f64') },
  large: { model: join(MODELS, 'large/model.json'), rows: join(MODELS, 'large/bench_rows.f32'), preds: join(MODELS, 'large.xgb_preds.f64') },
};
const MODES = ['single', 'batch', 'single-after-batch', 'batch-after-single'] as const;
type Mode = (typeof MODES)[number];

// ---------------------------------------------------------------------------------------------
// Prototype: compiled, one row per chunk call (no loop inside the generated functions)

function literal(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`non-finite literal ${v}`);
  return Object.is(v, -0) ? '0' : String(v);
}

function expr(tree: XgbTree, i: number, bitsets: Uint32Array[], used: Set<number> | null): string {
  if (tree.left[i] === -1) return literal(tree.value[i]);
  const l = expr(tree, tree.left[i], bitsets, used);
  const r = expr(tree, tree.right[i], bitsets, used);
  used?.add(tree.feature[i]);
  const x = used ? `v${tree.feature[i]}` : `x[o + ${tree.feature[i]}]`;
  const set = tree.categories[i];
  if (set !== null) {
    const bits = new Uint32Array((set.length === 0 ? 0 : set[set.length - 1] >>> 5) + 1);
    for (const c of set) bits[c >>> 5] |= 1 << (c & 31);
    bitsets.push(bits);
    const b = `B${bitsets.length - 1}`;
    return `((c = ${x}) !== c ? ${tree.defaultLeft[i] ? l : r} : c >= 0 && c < 16777216 && ((${b}[c >>> 5] >>> (c & 31)) & 1) === 1 ? ${r} : ${l})`;
  }
  const t = literal(tree.value[i]);
  return tree.defaultLeft[i] ? `(${x} >= ${t} ? ${r} : ${l})` : `(${x} < ${t} ? ${l} : ${r})`;
}

function compileRowFn(model: XgbModel, hoist: boolean, nodesPerChunk = 1500): ForestAccumulator {
  const chunks: number[][] = [[]];
  let nodes = 0;
  model.trees.forEach((tree, t) => {
    if (chunks[chunks.length - 1].length > 0 && nodes + tree.left.length > nodesPerChunk) {
      chunks.push([]);
      nodes = 0;
    }
    chunks[chunks.length - 1].push(t);
    nodes += tree.left.length;
  });
  const fns = chunks.map((idx) => {
    const bitsets: Uint32Array[] = [];
    const used = hoist ? new Set<number>() : null;
    const body = idx.map((t) => `  s = fround(s + ${expr(model.trees[t], 0, bitsets, used)});`);
    // hoist: each feature the chunk reads is loaded once per row into a local.
    const loads = used ? [...used].sort((a, b) => a - b).map((f) => `  const v${f} = x[o + ${f}];`) : [];
    const src = ['"use strict";', ...bitsets.map((_, k) => `const B${k} = B[${k}];`), 'return function row(x, o, s) {', '  let c;', ...loads, ...body, '  return s;', '};'].join('\n');
    return new Function('fround', 'B', src)(Math.fround, bitsets) as (x: Float32Array, o: number, s: number) => number;
  });
  const F = model.numFeature;
  return (x, rows, m) => {
    for (let c = 0; c < fns.length; c++) {
      const fn = fns[c];
      for (let r = 0, o = 0; r < rows; r++, o += F) m[r] = fn(x, o, m[r]);
    }
  };
}

// ---------------------------------------------------------------------------------------------

type Predict = (x: Float32Array, rows: number) => Float64Array;

function predictor(model: XgbModel, variant: string): Predict {
  if (model.numGroup !== 1 || model.booster !== 'gbtree') throw new Error('the lab handles single-output gbtree models only');
  const objective = objectiveFor(model.objective)!;
  const base = objective.baseMargin(model.baseScore[0]);
  let acc: ForestAccumulator;
  if (variant === 'current') acc = compileForest(model);
  else if (variant.startsWith('npc=')) acc = compileForest(model, { nodesPerChunk: Number(variant.slice(4)) });
  else if (variant.startsWith('depth=')) acc = compileForest(model, { maxCompiledDepth: Number(variant.slice(6)) });
  else if (variant === 'rowfn') acc = compileRowFn(model, false);
  else if (variant === 'rowfn-hoist') acc = compileRowFn(model, true);
  else if (variant === 'flat' || variant === 'flat-rtml') acc = flatForest(model);
  else if (variant === 'qs') acc = quickScorerForest(model);
  else if (variant === 'qs-int') acc = quickScorerForest(model, true);
  else if (variant === 'level') acc = levelForest(model, 'level');
  else if (variant === 'treewise') acc = levelForest(model, 'tree');
  else throw new Error(`unknown variant ${variant}`);
  // The same wrapper as src/models/xgboost/runtime.ts's predictSync.
  const scratch = new Float32Array(64);
  return (x, rows) => {
    const m = rows <= 64 ? scratch.subarray(0, rows) : new Float32Array(rows);
    m.fill(base);
    acc(x, rows, m);
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) objective.transform(m, r, 1, out, r);
    return out;
  };
}

interface LabResult {
  curve: number[];
  settled: number;
  maxDiff: number;
  buildMs: number;
}

function runOne(caseName: string, variant: string, mode: Mode, seconds: number): LabResult {
  const c = CASES[caseName];
  const model = parseXgbModel(parseXgbJson(readFileSync(c.model, 'utf8')));
  const t0 = now();
  const predict = predictor(model, variant);
  const buildMs = (now() - t0) / 1e6;
  const x = readF32(c.rows);
  const F = model.numFeature;
  const n = x.length / F;
  const maxDiff = existsSync(c.preds) ? maxAbsDiff(predict(x, n), readF64(c.preds)) : NaN;
  const views = Array.from({ length: 1000 }, (_, i) => x.subarray(i * F, (i + 1) * F));
  let sink = 0;
  const single = (): number => {
    const t = now();
    for (let i = 0; i < 10_000; i++) sink += predict(views[i % 1000], 1)[0];
    return (now() - t) / 10_000;
  };
  const batch = (): number => {
    const t = now();
    sink += predict(x, n)[0];
    return (now() - t) / n;
  };
  const loop = (rep: () => number, ms: number): number[] => {
    const out: number[] = [];
    const end = now() + ms * 1e6;
    while (out.length < 3 || now() < end) out.push(rep());
    return out;
  };
  const ms = seconds * 1000;
  let curve: number[];
  if (mode === 'single') curve = loop(single, ms);
  else if (mode === 'batch') curve = loop(batch, ms);
  else if (mode === 'single-after-batch') {
    loop(batch, ms / 2);
    curve = loop(single, ms / 2);
  } else {
    loop(single, ms / 2);
    curve = loop(batch, ms / 2);
  }
  if (sink === 0.123) console.error('');
  return { curve, settled: median(curve.slice(Math.floor(curve.length / 2))), maxDiff, buildMs };
}

function spawnOne(caseName: string, variant: string, mode: Mode, seconds: number): LabResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'one', caseName, variant, mode, String(seconds)], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`lab ${caseName} ${variant} ${mode} failed:\n${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as LabResult;
}

// ---------------------------------------------------------------------------------------------
// `table`: the shipped runtime (xgboostRuntime) with evaluator 'compiled' vs 'flat', measured by
// bench/worker.ts exactly as `npm run bench` measures (fresh process per figure, warmup until
// the last 5 reps agree within 15%, then 7 timed reps), over a sweep of forest sizes to place
// the 'auto' threshold. Sizes come from the two benchmark models: the first N trees of `large`
// (depth 8), and credit's 200 depth-4 trees repeated k times (timing only: outputs change).

interface TableCase {
  name: string;
  bundle: string;
  rowsFile: string;
  width: number;
  maxTrees?: number;
  repeatTrees?: number;
}

function tableCases(): TableCase[] {
  const credit = { bundle: join(ROOT, 'examples/credit'), rowsFile: join(MODELS, 'credit_rows.f32'), width: 22 };
  const large = { bundle: join(MODELS, 'large'), rowsFile: join(MODELS, 'large/bench_rows.f32'), width: 32 };
  return [
    { name: 'credit', ...credit },
    { name: 'credit-x2', ...credit, repeatTrees: 2 },
    { name: 'credit-x3', ...credit, repeatTrees: 3 },
    { name: 'credit-x6', ...credit, repeatTrees: 6 },
    { name: 'large-12', ...large, maxTrees: 12 },
    { name: 'large-25', ...large, maxTrees: 25 },
    { name: 'large-50', ...large, maxTrees: 50 },
    { name: 'large-100', ...large, maxTrees: 100 },
    { name: 'large-200', ...large, maxTrees: 200 },
    { name: 'large', ...large },
    // Optional, if present: unbalanced forests, where the flat walk's fixed depth wastes steps
    // (flatStepRatio 1.27 to 1.78). Trained with python3-xgboost 1.7.4 on make_models.py's data
    // (make_classification, 50,000 x 32, seed 7, 2% NaN; eta 0.05, subsample 0.8, hist):
    //   deep10      120 trees, max_depth 10, min_child_weight 40               (21k nodes)
    //   lossguide2  500 trees, grow_policy lossguide, max_leaves 24, max_depth 10 (23k nodes)
    //   lossguide   150 trees, grow_policy lossguide, max_leaves 96, max_depth 0  (29k nodes)
    // each saved as bench/.models/<name>/model.json.
    ...['deep10', 'lossguide2', 'lossguide']
      .filter((name) => existsSync(join(MODELS, name, 'model.json')))
      .map((name) => ({ name, ...large, bundle: join(MODELS, name) })),
  ];
}

function runWorker(task: Task & { evaluator: string; maxTrees?: number; repeatTrees?: number }): Measurement {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', 'worker.ts'), JSON.stringify(task)], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`worker ${task.kind} ${task.evaluator} failed:\n${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Measurement;
}

function evaluatorTable(): void {
  const only = process.env.LAB_TABLE_CASES?.split(',');
  const evaluators = (process.env.LAB_EVALUATORS ?? 'compiled,flat').split(',');
  const warmup = { minMs: 2000, maxMs: 20000 };
  const all: Record<string, unknown>[] = [];
  console.log('case        nodes  evaluator | single: 1st call  1st 1000 calls  settled  settle s | batch 10k: 1st batch/row  settled/row  settle s | same outputs');
  for (const c of tableCases().filter((t) => !only || only.includes(t.name))) {
    const model = parseXgbModel(parseXgbJson(readFileSync(join(c.bundle, 'model.json'), 'utf8')));
    const nodes = model.trees.slice(0, c.maxTrees ?? model.trees.length).reduce((n, t) => n + t.left.length, 0) * (c.repeatTrees ?? 1);
    const preds: Record<string, Float64Array> = {};
    for (const evaluator of evaluators) {
      const base = { bundle: c.bundle, rowsFile: c.rowsFile, width: c.width, evaluator, maxTrees: c.maxTrees, repeatTrees: c.repeatTrees };
      const predsOut = join(MODELS, `lab_${c.name}_${evaluator}.f64`);
      const single = runWorker({ kind: 'native-single', ...base, calls: 10_000, reps: 7, warmup });
      const batch = runWorker({ kind: 'native-batch', ...base, reps: 7, warmup, predsOut });
      preds[evaluator] = readF64(predsOut);
      const info = single.extra.info as Record<string, unknown>;
      const same = evaluators[0] === evaluator ? '' : preds[evaluators[0]].every((v, i) => Object.is(v, preds[evaluator][i])) ? 'identical' : 'DIFFERENT';
      const row = {
        case: c.name,
        trees: info.trees,
        nodes,
        evaluator: info.evaluator ?? evaluator,
        singleFirstNs: single.firstCallNs,
        singleFirst1000Ns: single.warmupNsPerRow[0],
        singleSettledNs: single.medianNsPerRow,
        singleSettleS: single.warmupMs / 1000,
        singleSettled: single.settled,
        batchFirstNsPerRow: batch.firstCallNs / batch.rows,
        batchSettledNsPerRow: batch.medianNsPerRow,
        batchSettleS: batch.warmupMs / 1000,
        batchSettled: batch.settled,
        loadMs: single.loadMs,
      };
      all.push(row);
      const flag = (ok: boolean) => (ok ? '' : '*');
      console.log(
        `${c.name.padEnd(10)} ${String(nodes).padStart(7)} ${String(row.evaluator).padEnd(8)} | ` +
          `${fmtNs(row.singleFirstNs).padStart(9)} ${fmtNs(row.singleFirst1000Ns).padStart(9)} ${fmtNs(row.singleSettledNs).padStart(9)} ${row.singleSettleS.toFixed(1).padStart(5)}${flag(single.settled)} | ` +
          `${fmtNs(row.batchFirstNsPerRow).padStart(9)} ${fmtNs(row.batchSettledNsPerRow).padStart(9)} ${row.batchSettleS.toFixed(1).padStart(5)}${flag(batch.settled)} | load ${row.loadMs.toFixed(0)} ms ${same}`,
      );
    }
  }
  console.log('(* = did not settle within 20 s; single figures are per call, batch per row)');
  process.stderr.write(`${JSON.stringify(all)}\n`);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd !== undefined && cmd !== 'table' && cmd !== 'one') {
  // Anything else (--help included) would start the whole lab: many processes of ~12 s each.
  process.stderr.write('usage: node --import tsx bench/evaluator_lab.ts [table | one <case> <variant> <mode> [seconds]]\n(no argument: every variant; see the header comment for LAB_* variables)\n');
  process.exit(cmd === '--help' || cmd === '-h' ? 0 : 2);
}
if (cmd === 'table') evaluatorTable();
else if (cmd === 'one') {
  const [caseName, variant, mode, seconds] = args;
  process.stdout.write(`${JSON.stringify(runOne(caseName, variant, mode as Mode, Number(seconds ?? 10)))}\n`);
} else {
  const variants = (process.env.LAB_VARIANTS ?? 'current,rowfn,flat').split(',');
  const cases = (process.env.LAB_CASES ?? 'credit,large').split(',');
  const modes = (process.env.LAB_MODES ?? MODES.join(',')).split(',') as Mode[];
  const seconds = Number(process.env.LAB_SECONDS ?? 12);
  for (const caseName of cases) {
    if (!existsSync(CASES[caseName].rows)) throw new Error(`${CASES[caseName].rows} is missing: run npm run bench first`);
    console.log(`== ${caseName}: settled ns/row (median of the last half of ${seconds} s of reps); first rep in brackets`);
    const settled: Record<string, Record<string, number>> = {};
    for (const variant of variants) {
      const cells: string[] = [];
      let diff = NaN;
      for (const mode of modes) {
        const r = spawnOne(caseName, variant, mode, seconds);
        (settled[variant] ??= {})[mode] = r.settled;
        diff = r.maxDiff;
        cells.push(`${mode} ${fmtNs(r.settled)} [${fmtNs(r.curve[0])}]`);
      }
      console.log(`${variant.padEnd(10)} ${cells.join('   ')}   max|diff| vs xgboost ${diff.toExponential(2)}`);
    }
    if (settled.current) {
      for (const variant of variants.filter((v) => v !== 'current')) {
        console.log(`${variant.padEnd(10)} speedup vs current: ${modes.map((m) => `${m} ${fmtRatio(settled.current[m] / settled[variant][m])}`).join('   ')}`);
      }
    }
  }
}
