/**
 * A bundle is validated at load: every problem names the file, the YAML path and line, and
 * the rule; declared features must fit the model actually loaded.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BundleError, loadBundle } from '../src/bundle/load.ts';
import { stumpModel, tempBundle } from './helpers/tmp.ts';

async function bundleFails(files: Record<string, string | object>, ...patterns: RegExp[]): Promise<BundleError> {
  const dir = tempBundle(files);
  let caught: unknown;
  try {
    await loadBundle(dir);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BundleError, `expected BundleError, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

const model = stumpModel();
const yaml = (body: string) => `name: demo\nversion: "1"\nmodel: { format: xgboost-json, path: model.json }\noutputs: { type: binary, classes: [good, bad] }\n${body}`;

describe('bundle manifest', () => {
  it('loads a bundle whose features come from the model file', async () => {
    const bundle = await loadBundle(tempBundle({ 'rtml.yaml': yaml(''), 'model.json': model }));
    assert.deepEqual(bundle.encoding.columns, ['a', 'b']);
    assert.deepEqual(bundle.outputs?.columns, ['p_bad']);
    assert.equal(bundle.goldenPath, null);
  });

  it('names the file, the YAML path, the line and the rule of each problem', async () => {
    const err = await bundleFails(
      {
        'rtml.yaml': yaml('features:\n  - { name: a, type: number, min: 5, max: 1 }\n  - { name: b, type: colour }\n'),
        'model.json': model,
      },
      /rtml\.yaml:6: features\[0\]\.min: min 5 is above max 1/,
      /rtml\.yaml:7: features\[1\]\.type: /,
    );
    assert.equal(err.problems.length, 2);
  });

  it('rejects unknown keys so typos do not pass silently', async () => {
    await bundleFails({ 'rtml.yaml': yaml('featurs: []\n'), 'model.json': model }, /Unrecognized key.*featurs/);
  });

  it('reports YAML syntax errors with their line', async () => {
    await bundleFails({ 'rtml.yaml': 'name: demo\nversion: "1\n  model: [\n', 'model.json': model }, /rtml\.yaml:\d+: YAML syntax/);
  });

  it('refuses a missing manifest', async () => {
    await bundleFails({ 'model.json': model }, /no rtml\.yaml here/);
  });

  it('refuses a model path that climbs out of the bundle', async () => {
    await bundleFails({ 'rtml.yaml': yaml('').replace('path: model.json', 'path: ../../etc/passwd') }, /model\.path: must be a path inside the bundle/);
  });

  it('refuses features that encode to a different width than the model', async () => {
    await bundleFails({ 'rtml.yaml': yaml('features:\n  - { name: a, type: number }\n'), 'model.json': model }, /encode to 1 model columns but the model expects 2/);
  });

  it('refuses features declared in a different order than the model names its columns', async () => {
    await bundleFails(
      { 'rtml.yaml': yaml('features:\n  - { name: b, type: number }\n  - { name: a, type: number }\n'), 'model.json': model },
      /model column 0 is "a" but the features put "b" there/,
    );
  });

  it('refuses outputs the model cannot produce', async () => {
    await bundleFails(
      { 'rtml.yaml': yaml('').replace('{ type: binary, classes: [good, bad] }', '{ type: multiclass, classes: [x, y, z] }'), 'model.json': model },
      /multiclass with 3 classes needs a model with 3 outputs/,
    );
  });

  it('refuses a positive class that is not a class, and duplicate features or category values', async () => {
    await bundleFails({ 'rtml.yaml': yaml('').replace('classes: [good, bad]', 'classes: [good, bad], positive_class: ugly'), 'model.json': model }, /outputs\.positive_class: must be one of classes/);
    await bundleFails(
      { 'rtml.yaml': yaml('features:\n  - { name: a, type: number }\n  - { name: a, type: category, values: [x, x] }\n'), 'model.json': model },
      /duplicate feature "a"/,
      /duplicate value "x"/,
    );
  });

  it('turns a model load failure into a bundle error naming the model file', async () => {
    const err = await bundleFails({ 'rtml.yaml': yaml(''), 'model.json': '{"version": [1' }, /model\.json: not valid JSON/);
    assert.ok(err.problems[0].file.endsWith(join('model.json')));
  });

  it('refuses an unknown model format', async () => {
    await bundleFails({ 'rtml.yaml': yaml('').replace('xgboost-json', 'pickle'), 'model.json': model }, /unknown model format pickle/);
  });
});
