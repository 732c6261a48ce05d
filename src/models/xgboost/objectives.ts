/**
 * What each XGBoost objective does at prediction time: how base_score (stored in response
 * space) becomes a starting margin, and how the summed float32 margin becomes the output.
 * The links are computed in float32, as XGBoost 1.7's `ProbToMargin` does.
 */
import type { OutputReading } from '../runtime.ts';

const f32 = Math.fround;

export interface Objective {
  readonly outputKind: 'probability' | 'class' | 'value';
  /** What the outputs are, in words. */
  readonly outputs: string;
  /** How a manifest may read the outputs of a model with `groups` output groups. */
  readAs(groups: number): readonly OutputReading[];
  /** Classes told apart with `groups` output groups; null for a regression. */
  classes(groups: number): number | null;
  /** Starting margin for a base_score, as a float32 value. */
  baseMargin(baseScore: number): number;
  /** Output values per row for `groups` margins. */
  outputWidth(groups: number): number;
  /** Writes the outputs for one row's margins (`margins[at .. at+groups)`) to `out[outAt ..]`. */
  transform(margins: Float32Array, at: number, groups: number, out: Float64Array, outAt: number): void;
}

const logit = (p: number): number => {
  const bs = f32(p);
  if (!(bs > 0 && bs < 1)) throw new RangeError(`base_score must be in (0, 1) for a logistic objective, got ${p}`);
  return f32(-Math.log(f32(f32(1 / bs) - 1)));
};
const logLink = (p: number): number => {
  const bs = f32(p);
  if (!(bs > 0)) throw new RangeError(`base_score must be positive for a log-link objective, got ${p}`);
  return f32(Math.log(bs));
};
const identityLink = (p: number): number => f32(p);

/** What one objective's outputs are and how they may be read. */
interface Reading {
  outputs: string;
  readAs: readonly OutputReading[];
  classes: number | null;
}

const PROBABILITY: Reading = { outputs: 'P(label 1)', readAs: ['binary'], classes: 2 };
// reg:logistic fits targets in [0, 1]: a value, or P(label 1) when the targets were labels.
const UNIT_VALUE: Reading = { outputs: 'a value in [0, 1]', readAs: ['regression', 'binary'], classes: null };
const MARGIN: Reading = { outputs: 'the margin (log-odds) of label 1', readAs: ['regression'], classes: 2 };
// binary:hinge outputs the label itself: a 2-class class index, or a 0/1 value; never a probability.
const LABEL: Reading = { outputs: 'class label 0 or 1', readAs: ['multiclass', 'regression'], classes: 2 };
const VALUE: Reading = { outputs: 'a value', readAs: ['regression'], classes: null };

const single = (kind: Objective['outputKind'], reading: Reading, link: (p: number) => number, apply: (m: number) => number): Objective => ({
  outputKind: kind,
  outputs: reading.outputs,
  readAs: () => reading.readAs,
  classes: () => reading.classes,
  baseMargin: link,
  outputWidth: () => 1,
  transform(margins, at, _groups, out, outAt) {
    out[outAt] = apply(margins[at]);
  },
});

const sigmoid = (m: number): number => 1 / (1 + Math.exp(-m));
const identity = (m: number): number => m;

const softprob: Objective = {
  outputKind: 'probability',
  outputs: 'per-class probabilities',
  // With two classes, P(class 1) is the second of two values: a binary reading works too.
  readAs: (groups) => (groups === 2 ? ['multiclass', 'binary'] : ['multiclass']),
  classes: (groups) => groups,
  baseMargin: identityLink,
  outputWidth: (groups) => groups,
  transform(margins, at, groups, out, outAt) {
    let max = -Infinity;
    for (let g = 0; g < groups; g++) if (margins[at + g] > max) max = margins[at + g];
    let sum = 0;
    for (let g = 0; g < groups; g++) {
      const e = Math.exp(margins[at + g] - max);
      out[outAt + g] = e;
      sum += e;
    }
    for (let g = 0; g < groups; g++) out[outAt + g] /= sum;
  },
};

const softmax: Objective = {
  outputKind: 'class',
  outputs: 'a class index',
  readAs: () => ['multiclass'],
  classes: (groups) => groups,
  baseMargin: identityLink,
  outputWidth: () => 1,
  transform(margins, at, groups, out, outAt) {
    // XGBoost keeps the first index holding the maximum.
    let best = 0;
    for (let g = 1; g < groups; g++) if (margins[at + g] > margins[at + best]) best = g;
    out[outAt] = best;
  },
};

const OBJECTIVES: Readonly<Record<string, Objective>> = {
  'binary:logistic': single('probability', PROBABILITY, logit, sigmoid),
  'reg:logistic': single('probability', UNIT_VALUE, logit, sigmoid),
  'binary:logitraw': single('value', MARGIN, identityLink, identity), // base_score is the starting margin as is
  'binary:hinge': single('class', LABEL, identityLink, (m) => (m > 0 ? 1 : 0)),
  'reg:squarederror': single('value', VALUE, identityLink, identity),
  'reg:linear': single('value', VALUE, identityLink, identity),
  'reg:squaredlogerror': single('value', VALUE, identityLink, identity),
  'reg:pseudohubererror': single('value', VALUE, identityLink, identity),
  'reg:absoluteerror': single('value', VALUE, identityLink, identity),
  'count:poisson': single('value', VALUE, logLink, Math.exp),
  'reg:gamma': single('value', VALUE, logLink, Math.exp),
  'reg:tweedie': single('value', VALUE, logLink, Math.exp),
  'multi:softprob': softprob,
  'multi:softmax': softmax,
};

export const SUPPORTED_OBJECTIVES = Object.keys(OBJECTIVES);

export function objectiveFor(name: string): Objective | undefined {
  return Object.hasOwn(OBJECTIVES, name) ? OBJECTIVES[name] : undefined;
}
