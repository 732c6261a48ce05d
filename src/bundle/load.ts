/**
 * The bundle's front door: `loadBundle(dir)` reads `rtml.yaml`, validates it (errors name
 * the file, the YAML path and line, and the rule), loads the model through its runtime and
 * checks that the declared features and outputs fit the model actually loaded.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError, readYaml, yamlPath, type ConfigProblem } from '../config/yaml.ts';
import { contributionSupport, loadModel, ModelLoadError, type ModelRuntime } from '../models/index.ts';
import { buildEncoding, type Encoding } from './encoding.ts';
import { checkColumns } from './columns.ts';
import { loadPolicy, POLICY_FILE, PolicyError, type Policy } from '../decision/index.ts';
import { manifestSchema, type FeatureSpec, type Manifest } from './manifest.ts';
import { buildResolver, type FeatureResolver } from '../features/resolve.ts';
import { buildOutputMapping, OutputMismatchError, taskMismatch, type OutputMapping } from './outputs.ts';
import { bundleFile, BundleFileError, type BundleFileKind } from './files.ts';
import { REFERENCE_FILE } from '../monitor/reference.ts';

export const MANIFEST_FILE = 'rtml.yaml';
export const GOLDEN_FILE = 'golden.jsonl';

export interface Bundle {
  readonly dir: string;
  readonly manifest: Manifest;
  readonly name: string;
  readonly version: string;
  /** Null for a rules-only service. */
  readonly model: ModelRuntime | null;
  readonly encoding: Encoding;
  /** Null for a rules-only service. */
  readonly outputs: OutputMapping | null;
  /** The decision policy, when the bundle has one. */
  readonly policy: Policy | null;
  /** Real path of the golden file, when the bundle has one. */
  readonly goldenPath: string | null;
  /** Real path of the monitoring reference profile (`monitoring.reference`), when the bundle has one. */
  readonly referencePath: string | null;
  /** Gathers features that do not come from the request; null when all do. */
  readonly sources: FeatureResolver | null;
}

/** A bundle with a model: what scoring needs. */
export interface ModelBundle extends Bundle {
  readonly model: ModelRuntime;
  readonly outputs: OutputMapping;
}

export function hasModel(bundle: Bundle): bundle is ModelBundle {
  return bundle.model !== null && bundle.outputs !== null;
}

/** One problem in a bundle, located as precisely as we can: file, YAML path, line. */
export type BundleProblem = ConfigProblem;

export class BundleError extends ConfigError {
  override name = 'BundleError';
}

/** Reads and validates `rtml.yaml` without loading the model. */
export async function readManifest(dir: string): Promise<Manifest> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    const real = await bundleFile(dir, MANIFEST_FILE, 'manifest');
    if (real === null) throw new BundleFileError(`no ${MANIFEST_FILE} here: a bundle is a directory holding ${MANIFEST_FILE} and its model`);
    text = await readFile(real, 'utf8');
  } catch (err) {
    if (err instanceof BundleFileError) throw new BundleError([{ file, path: '', rule: err.rule }]);
    throw err;
  }
  const read = readYaml(text, file);
  if (!read.ok) throw new BundleError(read.problems);
  const parsed = manifestSchema.safeParse(read.value);
  if (parsed.success) return parsed.data;
  throw new BundleError(parsed.error.issues.map((issue) => ({ file, path: yamlPath(issue.path), line: read.locate(issue.path), rule: issue.message })));
}

/** Loads a bundle that must have a model (for scoring and parity checks). */
export async function loadModelBundle(dir: string): Promise<ModelBundle> {
  const bundle = await loadBundle(dir);
  if (!hasModel(bundle)) throw new BundleError([{ file: join(dir, MANIFEST_FILE), path: 'model', rule: 'this is a rules-only bundle: there is no model to score with' }]);
  return bundle;
}

export async function loadBundle(dir: string): Promise<Bundle> {
  const manifest = await readManifest(dir);
  const manifestFile = join(dir, MANIFEST_FILE);
  const problems: BundleProblem[] = [];
  const problem = (path: string, rule: string) => problems.push({ file: manifestFile, path, rule });
  /**
   * The real path of the file `name` at `yamlKey`, or null when there is none; a file that is
   * not the bundle's to read, or a `required` one that is absent, is a problem.
   */
  const locate = async (yamlKey: string, name: string, kind: BundleFileKind, required: boolean): Promise<string | null> => {
    try {
      const real = await bundleFile(dir, name, kind);
      if (real === null && required) problem(yamlKey, `file ${name} does not exist`);
      return real;
    } catch (err) {
      if (!(err instanceof BundleFileError)) throw err;
      problem(yamlKey, err.rule);
      return null;
    }
  };

  let model: ModelRuntime | null = null;
  if (manifest.model) {
    const modelFile = await locate('model.path', manifest.model.path, 'model', true);
    if (modelFile === null) throw new BundleError(problems);
    try {
      model = await loadModel(manifest.model.format, modelFile, { input: manifest.model.input, output: manifest.model.output });
    } catch (err) {
      if (err instanceof ModelLoadError) throw new BundleError([{ file: err.file, path: '', rule: err.reason }]);
      throw new BundleError([{ file: manifestFile, path: 'model.format', rule: (err as Error).message }]);
    }
  }
  const fail = async (): Promise<never> => {
    await model?.close?.();
    throw new BundleError(problems.slice(0, 20));
  };

  let features: FeatureSpec[];
  if (manifest.features) features = manifest.features;
  else if (model?.featureNames) {
    // The model names its columns: each is a numeric pass-through where missing means NaN.
    features = model.featureNames.map((name) => ({ name, type: 'number', nullable: true }));
  } else {
    problem('features', 'required: this model file does not carry feature names, so the bundle must list its features in column order');
    features = [];
  }
  const encoding = buildEncoding(features);
  if (model && problems.length === 0) checkColumns(model, manifest.features, encoding, problem);

  let outputs: OutputMapping | null = null;
  const mismatch = model?.task && manifest.outputs ? taskMismatch(manifest.outputs, model.task) : null;
  if (mismatch) problem(mismatch.path, mismatch.rule);
  else if (model && manifest.outputs) {
    try {
      outputs = buildOutputMapping(manifest.outputs, model.outputWidth, model.outputKind);
    } catch (err) {
      if (!(err instanceof OutputMismatchError)) throw err;
      problem('outputs', err.message);
    }
  }

  // A file the manifest names must exist; a default name may be absent.
  const goldenPath = await locate('golden', manifest.golden ?? GOLDEN_FILE, 'golden', manifest.golden !== undefined);
  const policyFile = await locate('policy', manifest.policy ?? POLICY_FILE, 'policy', manifest.policy !== undefined);
  // `rtml profile` writes the reference after the bundle exists: whether one is needed is the server's call.
  const referencePath = await locate('monitoring.reference', manifest.monitoring?.reference ?? REFERENCE_FILE, 'reference', false);
  if (problems.length > 0) return fail();

  let policy: Policy | null = null;
  if (policyFile) {
    try {
      policy = await loadPolicy(policyFile, { features, outputs: outputs?.columns ?? [] });
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      problems.push(...err.problems);
    }
    if (policy && policy.usesModel && !model) problem('policy', 'the policy has score bands but the bundle has no model');
    if (policy?.modelReasons && model) {
      // Reasons are the model's exact contributions or nothing: never an approximation.
      const support = contributionSupport(model);
      if (!support.exact) problem('policy', `model_reasons asks for the model's own reasons, but this model has no exact contributions: ${support.reason}`);
    }
  }
  if (!model && !policy) problem('model', 'a bundle needs a model, a policy, or both');
  const { resolver, problems: sourceProblems } = buildResolver(manifest, features);
  for (const p of sourceProblems) problem(p.path, p.rule);
  if (problems.length > 0) return fail();

  return { dir: resolve(dir), manifest, name: manifest.name, version: manifest.version, model, encoding, outputs, policy, goldenPath, referencePath, sources: resolver };
}
