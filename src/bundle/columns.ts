/**
 * The declared features against the columns the model file describes. The same count is not
 * enough: a swapped column order, one-hot columns listed in another order than the dummies
 * the model was trained on, or a category list shorter than the codes its splits test all
 * score without an error, and all score garbage. Where the model names its columns, types
 * them (XGBoost's `c` for categorical) or splits on category codes, they must agree.
 */
import type { ModelRuntime } from '../models/index.ts';
import type { Encoding } from './encoding.ts';
import type { FeatureSpec } from './manifest.ts';

type Problem = (path: string, rule: string) => void;
type CategoryFeature = Extract<FeatureSpec, { type: 'category' }>;

/**
 * Separators of dummy-column names: rtml's own `f=v`, pandas' get_dummies default `f_v`
 * (also scikit-learn's OneHotEncoder), and `f__v`, `f.v`, `f:v`, `f v`.
 */
const DUMMY_SEPARATORS = ['=', '_', '__', '.', ':', ' '];

/** The declared value a model column is the dummy of, when it is one of `feature`'s. */
function dummyValue(column: string, feature: CategoryFeature): string | undefined {
  for (const sep of DUMMY_SEPARATORS) {
    const prefix = feature.name + sep;
    if (column.startsWith(prefix) && feature.values.includes(column.slice(prefix.length))) return column.slice(prefix.length);
  }
  return undefined;
}

const quoted = (names: readonly string[]) => `[${names.map((n) => JSON.stringify(n)).join(', ')}]`;
const span = (from: number, width: number) => (width === 1 ? `column ${from}` : `columns ${from}-${from + width - 1}`);

/**
 * Checks the declared `features` (absent when they come from the model's own names) against
 * the model. Reports through `problem`, with the YAML path of the feature at fault.
 */
export function checkColumns(model: ModelRuntime, features: readonly FeatureSpec[] | undefined, encoding: Encoding, problem: Problem): void {
  if (encoding.width !== model.inputWidth) {
    problem('features', `encode to ${encoding.width} model columns but the model expects ${model.inputWidth}`);
    return;
  }
  let offset = 0;
  encoding.features.forEach((feature, k) => {
    const width = feature.type === 'category' && feature.encoding === 'onehot' ? feature.values.length : 1;
    const path = features ? `features[${k}]` : 'features';
    if (features && model.featureNames) checkNames(model.featureNames, feature, k, offset, width, problem);
    checkCategorical(model, feature, path, offset, width, problem);
    offset += width;
  });
}

function checkNames(names: readonly string[], feature: FeatureSpec, k: number, at: number, width: number, problem: Problem): void {
  if (feature.type === 'category' && feature.encoding === 'onehot') {
    checkDummies(names, feature, k, at, width, problem);
    return;
  }
  if (names[at] === feature.name) return;
  const where = names.indexOf(feature.name);
  const why = where >= 0 ? `"${feature.name}" is listed in another order (the model has it at column ${where})` : `the model has no column "${feature.name}" (renamed?)`;
  problem(`features[${k}].name`, `model column ${at} is ${JSON.stringify(names[at])} but the features put ${JSON.stringify(feature.name)} there: ${why}`);
}

/** A one-hot block must sit on the model's dummy columns of the same values, in the same order. */
function checkDummies(names: readonly string[], feature: CategoryFeature, k: number, at: number, width: number, problem: Problem): void {
  const block = names.slice(at, at + width);
  const values = block.map((column) => dummyValue(column, feature));
  if (values.every((v, i) => v === feature.values[i])) return;
  const path = `features[${k}].values`;
  if (new Set(values).size === width && values.every((v) => v !== undefined)) {
    problem(path, `listed in another order than the model's one-hot columns (${span(at, width)}: ${quoted(block)}); the model's order is ${quoted(values as string[])}`);
    return;
  }
  // The model's dummies of this feature may sit elsewhere: then the features are out of order.
  const elsewhere = names.flatMap((column, i) => (dummyValue(column, feature) !== undefined ? [i] : []));
  if (elsewhere.length === width && new Set(elsewhere.map((i) => dummyValue(names[i], feature))).size === width) {
    problem(`features[${k}]`, `listed in another order: the model's one-hot columns of ${JSON.stringify(feature.name)} are columns ${elsewhere.join(', ')}, not ${span(at, width)}`);
    return;
  }
  const found = new Set(values);
  const missing = feature.values.filter((v) => !found.has(v));
  problem(
    path,
    `${quoted(missing)} ${missing.length === 1 ? 'has' : 'have'} no one-hot column in the model (renamed or not found): ` +
      `the model's ${span(at, width)} are ${quoted(block)}, expected ${JSON.stringify(feature.name)} and a value joined by one of ${DUMMY_SEPARATORS.map((s) => JSON.stringify(s)).join(' ')}`,
  );
}

/**
 * An ordinal category feeds category codes, which only a categorical column reads as such;
 * a categorical column fed anything else reads numbers as codes. And every code a split
 * tests must name a declared value, else the list is short or wrong.
 */
function checkCategorical(model: ModelRuntime, feature: FeatureSpec, path: string, at: number, width: number, problem: Problem): void {
  const types = model.featureTypes;
  const maxCode = model.maxCategoryCode;
  const categorical = (i: number) => types?.[i] === 'c' || (maxCode?.[i] ?? -1) >= 0;
  const columnName = (i: number) => (model.featureNames ? ` (${JSON.stringify(model.featureNames[i])})` : '');
  if (feature.type === 'category' && feature.encoding === 'ordinal') {
    if (types && types[at] !== 'c') {
      problem(`${path}.encoding`, `ordinal feeds category codes to model column ${at}${columnName(at)}, which the model types ${JSON.stringify(types[at])}, not categorical ("c"): was it one-hot encoded (encoding onehot) or numeric?`);
      return;
    }
    const code = maxCode?.[at] ?? -1;
    if (code >= feature.values.length) {
      problem(`${path}.values`, `lists ${feature.values.length} values but the model's splits on column ${at}${columnName(at)} test category code ${code}: the list is short or wrong (it must be the pandas categories, in order)`);
    }
    return;
  }
  for (let i = at; i < at + width; i++) {
    if (!categorical(i)) continue;
    problem(path, `model column ${i}${columnName(i)} is categorical${types?.[i] === 'c' ? ' (feature type "c")' : ' (its splits test category codes)'}: declare it type category, encoding ordinal, with values the pandas categories in order`);
    return;
  }
}
