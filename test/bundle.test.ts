/**
 * A bundle is validated at load: every problem names the file, the YAML path and line, and
 * the rule; declared features must fit the model actually loaded.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, renameSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BundleError, loadBundle } from '../src/bundle/load.ts';
import { stumpModel, tempBundle, tempDir } from './helpers/tmp.ts';

async function bundleFails(files: Record<string, string | object> | string, ...patterns: RegExp[]): Promise<BundleError> {
  const dir = typeof files === 'string' ? files : tempBundle(files);
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
      /outputs\.type: multiclass does not fit the model's objective binary:logistic, which outputs P\(label 1\): declare binary/,
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

describe('a bundle reads only its own files', () => {
  // Outside every bundle: a valid model, policy, golden file and reference, and a secret.
  const SECRET = 'root:x:0:0:SECRET-CONTENT';
  const outside = tempBundle({ 'model.json': model, 'secret.txt': SECRET, 'ref.json': '{}', 'policy.yaml': 'version: "1"\nactions: [go]\nfallback: { default: { action: go, code: GO, message: go } }\n' });
  const withLink = (files: Record<string, string | object>, link: string, target: string) => {
    const dir = tempBundle(files);
    symlinkSync(target, join(dir, link));
    return dir;
  };
  const refusedQuietly = async (dir: string, ...patterns: RegExp[]) => {
    const err = await bundleFails(dir, ...patterns);
    assert.doesNotMatch(err.message, /SECRET-CONTENT/);
  };

  it('refuses names that climb out or are absolute, for every file the manifest names', async () => {
    const ref = (path: string) => `monitoring: { reference: ${JSON.stringify(path)} }\n`;
    await bundleFails({ 'rtml.yaml': yaml('').replace('path: model.json', `path: ${join(outside, 'model.json')}`) }, /model\.path: must be a path inside the bundle/);
    await bundleFails({ 'rtml.yaml': yaml('golden: ../../etc/passwd\n'), 'model.json': model }, /golden: must be a path inside the bundle/);
    await bundleFails({ 'rtml.yaml': yaml('policy: /etc/passwd\n'), 'model.json': model }, /policy: must be a path inside the bundle/);
    await refusedQuietly(tempBundle({ 'rtml.yaml': yaml(ref('../../../etc/passwd')), 'model.json': model }), /monitoring\.reference: must be a path inside the bundle, got "\.\.\/\.\.\/\.\.\/etc\/passwd"/);
    await bundleFails({ 'rtml.yaml': yaml(ref(join(outside, 'secret.txt'))), 'model.json': model }, /monitoring\.reference: must be a path inside the bundle/);
  });

  it('refuses a symlink to a file outside, explicit or default-named, without reading it', async () => {
    await refusedQuietly(withLink({ 'rtml.yaml': yaml('') }, 'model.json', join(outside, 'model.json')), /model\.path: model\.json resolves outside the bundle/);
    await refusedQuietly(withLink({ 'rtml.yaml': yaml(''), 'model.json': model }, 'golden.jsonl', join(outside, 'secret.txt')), /golden: golden\.jsonl resolves outside the bundle/);
    await refusedQuietly(withLink({ 'rtml.yaml': yaml(''), 'model.json': model }, 'policy.yaml', join(outside, 'policy.yaml')), /policy: policy\.yaml resolves outside the bundle/);
    await refusedQuietly(withLink({ 'rtml.yaml': yaml(''), 'model.json': model }, 'reference.json', join(outside, 'secret.txt')), /monitoring\.reference: reference\.json resolves outside the bundle/);
    await refusedQuietly(withLink({ 'model.json': model }, 'rtml.yaml', join(outside, 'secret.txt')), /rtml\.yaml resolves outside the bundle/);
    // Relative targets resolve the same way, and a dangling link is not followed anywhere.
    await refusedQuietly(withLink({ 'rtml.yaml': yaml(''), 'model.json': model }, 'reference.json', '../../../../etc/passwd'), /reference\.json resolves outside the bundle/);
    await bundleFails(withLink({ 'rtml.yaml': yaml(''), 'model.json': model }, 'golden.jsonl', join(outside, 'gone.jsonl')), /golden: golden\.jsonl is a symlink that does not resolve/);
  });

  it('refuses a file reached through a symlinked folder that leads outside', async () => {
    const dir = withLink({ 'rtml.yaml': yaml('').replace('path: model.json', 'path: models/model.json') }, 'models', outside);
    await refusedQuietly(dir, /model\.path: models\/model\.json resolves outside the bundle/);
  });

  it('follows symlinks that stay inside the bundle', async () => {
    const dir = tempBundle({ 'rtml.yaml': yaml('') });
    mkdirSync(join(dir, 'v3'));
    writeFileSync(join(dir, 'v3', 'model.json'), JSON.stringify(model));
    symlinkSync('v3/model.json', join(dir, 'model.json'));
    const bundle = await loadBundle(dir);
    assert.deepEqual(bundle.encoding.columns, ['a', 'b']);
  });

  it('refuses a FIFO or a directory instead of hanging on it', { timeout: 10_000 }, async () => {
    const dir = tempBundle({ 'rtml.yaml': yaml('') });
    execFileSync('mkfifo', [join(dir, 'model.json')]);
    await bundleFails(dir, /model\.path: model\.json is a FIFO, not a regular file/);
    const withDir = tempBundle({ 'rtml.yaml': yaml(''), 'model.json': model });
    mkdirSync(join(withDir, 'policy.yaml'));
    await bundleFails(withDir, /policy: policy\.yaml is a directory, not a regular file/);
  });

  it('refuses a file over its kind\'s size before reading it', async () => {
    // Sparse files: the size is real to stat, the disk holds nothing.
    const bigModel = tempBundle({ 'rtml.yaml': yaml(''), 'model.json': '' });
    truncateSync(join(bigModel, 'model.json'), 1024 ** 3 + 1);
    await bundleFails(bigModel, /model\.path: model\.json has 1073741825 bytes, over the limit of 1024 MiB for a model file/);
    const bigReference = tempBundle({ 'rtml.yaml': yaml(''), 'model.json': model, 'reference.json': '' });
    truncateSync(join(bigReference, 'reference.json'), 64 * 1024 ** 2 + 1);
    await bundleFails(bigReference, /monitoring\.reference: reference\.json has 67108865 bytes, over the limit of 64 MiB/);
    const bigManifest = tempBundle({ 'rtml.yaml': yaml(''), 'model.json': model });
    truncateSync(join(bigManifest, 'rtml.yaml'), 4 * 1024 ** 2 + 1);
    await bundleFails(bigManifest, /rtml\.yaml has 4194305 bytes, over the limit of 4 MiB for a manifest file/);
  });

  it('exposes the confined reference path so the server reads the reference through it', async () => {
    const dir = tempBundle({ 'rtml.yaml': yaml('monitoring: { reference: profiles/ref.json }\n'), 'model.json': model });
    assert.equal((await loadBundle(dir)).referencePath, null);
    mkdirSync(join(dir, 'profiles'));
    writeFileSync(join(dir, 'profiles', 'ref.json'), '{}');
    assert.equal((await loadBundle(dir)).referencePath, join(dir, 'profiles', 'ref.json'));
    renameSync(join(dir, 'profiles'), join(dir, 'moved'));
    symlinkSync(join(outside), join(dir, 'profiles'));
    await bundleFails(dir, /monitoring\.reference: profiles\/ref\.json resolves outside the bundle/);
  });
});

const ROOT = new URL('..', import.meta.url).pathname;

/** A copy of a real bundle (a fixture made by XGBoost, or an example) with its rtml.yaml edited. */
function bundleCopy(from: string, edit: (yaml: string) => string): string {
  const source = from.includes('/') ? join(ROOT, from) : join(ROOT, 'test/fixtures/bundles', from);
  const dir = tempDir();
  cpSync(source, dir, { recursive: true, filter: (path) => !path.endsWith('.csv') });
  const manifest = join(dir, 'rtml.yaml');
  const before = readFileSync(manifest, 'utf8');
  const after = edit(before);
  assert.notEqual(after, before, 'the edit changed nothing');
  writeFileSync(manifest, after);
  return dir;
}
const withOutputs = (outputs: string) => (yaml: string) => yaml.replace(/outputs:\n( {2}.*\n)+/, `outputs:\n${outputs.replace(/^/gm, '  ')}\n`);

describe('outputs must fit the model\'s objective', () => {
  it('refuses regression on a binary:logistic model instead of writing probabilities as values', async () => {
    await bundleFails(bundleCopy('binary_logistic', withOutputs('type: regression')), /outputs\.type: regression does not fit the model's objective binary:logistic, which outputs P\(label 1\): declare binary/);
  });

  it('refuses a class list longer or shorter than the classes a multi:softmax model tells apart', async () => {
    await bundleFails(bundleCopy('multi_softmax', withOutputs('type: multiclass\nclasses: [low, mid, high, extra]')), /outputs\.classes: lists 4 classes but the model \(multi:softmax\) tells 3 apart/);
    await bundleFails(bundleCopy('multi_softmax', withOutputs('type: multiclass\nclasses: [low, high]')), /outputs\.classes: lists 2 classes but the model \(multi:softmax\) tells 3 apart/);
    await bundleFails(bundleCopy('multi_softprob', withOutputs('type: multiclass\nclasses: [n, e, s]')), /outputs\.classes: lists 3 classes but the model \(multi:softprob\) tells 4 apart/);
    await bundleFails(bundleCopy('multi_softprob', withOutputs('type: binary\nclasses: [n, e]')), /outputs\.type: binary does not fit the model's objective multi:softprob, which outputs per-class probabilities: declare multiclass/);
  });

  it('reads reg:logistic as a regression or as binary, binary:logitraw only as a regression', async () => {
    assert.deepEqual((await loadBundle(join(ROOT, 'test/fixtures/bundles/reg_logistic'))).outputs?.columns, ['prediction']);
    const asBinary = await loadBundle(bundleCopy('reg_logistic', withOutputs('type: binary\nclasses: [no, yes]')));
    assert.deepEqual(asBinary.outputs?.columns, ['p_yes']);
    await bundleFails(bundleCopy('binary_logitraw', withOutputs('type: binary\nclasses: [no, yes]')), /outputs\.type: binary does not fit the model's objective binary:logitraw, which outputs the margin \(log-odds\) of label 1: declare regression/);
  });

  it('reads binary:hinge labels as 2-class multiclass or as a 0/1 regression, never as a probability', async () => {
    const hinge = await loadBundle(join(ROOT, 'test/fixtures/bundles/binary_hinge'));
    assert.deepEqual(hinge.outputs?.columns, ['class']);
    assert.deepEqual((await loadBundle(bundleCopy('binary_hinge', withOutputs('type: regression')))).outputs?.columns, ['prediction']);
    await bundleFails(bundleCopy('binary_hinge', withOutputs('type: binary\nclasses: [neg, pos]')), /outputs\.type: binary does not fit the model's objective binary:hinge, which outputs class label 0 or 1: declare multiclass or regression/);
    await bundleFails(bundleCopy('binary_hinge', withOutputs('type: multiclass\nclasses: [a, b, c]')), /outputs\.classes: lists 3 classes but the model \(binary:hinge\) tells 2 apart/);
  });

  it('keeps checking ONNX outputs by width, ONNX having no objective', async () => {
    await bundleFails(bundleCopy('onnx_xgb_multi', (y) => y.replace(/classes: \[[^\]]*\]/, 'classes: [a, b, c, d]')), /multiclass with 4 classes needs a model with 4 outputs/);
  });
});

describe('features must fit the columns the model describes', () => {
  const swap = (a: string, b: string) => (yaml: string) => yaml.replace(`"${a}", "${b}"`, `"${b}", "${a}"`);

  it('refuses one-hot values listed in another order than the model\'s dummy columns, and names the model\'s order', async () => {
    await bundleFails(
      bundleCopy('onehot', swap('red', 'green')),
      /features\[1\]\.values: listed in another order than the model's one-hot columns \(columns 1-5: \["color=red", "color=green", "color=blue", "color=black", "color=white"\]\); the model's order is \["red", "green", "blue", "black", "white"\]/,
    );
  });

  it('reads pandas get_dummies column names (color_black) as the one-hot columns of color', async () => {
    const bundle = await loadBundle(join(ROOT, 'test/fixtures/bundles/onehot_dummies'));
    assert.deepEqual(bundle.encoding.columns.slice(3), ['color=black', 'color=blue', 'color=green', 'color=red', 'color=white']);
    await bundleFails(bundleCopy('onehot_dummies', swap('black', 'blue')), /features\[3\]\.values: listed in another order .* the model's order is \["black", "blue", "green", "red", "white"\]/);
    await bundleFails(
      bundleCopy('onehot_dummies', (y) => y.replace('"green"', '"grey"')),
      /features\[3\]\.values: \["grey"\] has no one-hot column in the model \(renamed or not found\): the model's columns 3-7 are \["color_black", "color_blue", "color_green", "color_red", "color_white"\]/,
    );
  });

  it('says where the model has a one-hot block the features put elsewhere', async () => {
    const flagLast = (y: string) => y.replace(/( {2}- \{name: "flag".*\n)( {2}- \{name: "color".*\n)/, '$2$1');
    const err = await bundleFails(bundleCopy('onehot_dummies', flagLast), /features\[2\]: listed in another order: the model's one-hot columns of "color" are columns 3, 4, 5, 6, 7, not columns 2-6/);
    assert.match(err.message, /features\[3\]\.name: model column 7 is "color_white" but the features put "flag" there: "flag" is listed in another order \(the model has it at column 2\)/);
  });

  it('refuses a categorical ("c") model column declared as a number, and an ordinal category on a numeric column', async () => {
    await bundleFails(
      bundleCopy('categorical', (y) => y.replace(/\{name: "city", type: category, nullable: true, values: \[[^\]]*\], encoding: ordinal\}/, '{name: "city", type: number, nullable: true}')),
      /features\[0\]: model column 0 \("city"\) is categorical \(feature type "c"\): declare it type category, encoding ordinal/,
    );
    // Without a features list every column would be a number: the categorical ones must be declared.
    await bundleFails(bundleCopy('categorical', (y) => y.replace(/features:\n( {2}- .*\n)+/, '')), /features: model column 0 \("city"\) is categorical \(feature type "c"\)/);
    await bundleFails(
      bundleCopy('binary_logistic', (y) => y.replace(/\{name: "n_items", type: integer, min: 0\}/, '{name: "n_items", type: category, values: ["0", "1", "2", "3"], encoding: ordinal}')),
      /features\[6\]\.encoding: ordinal feeds category codes to model column 6 \("n_items"\), which the model types "int", not categorical \("c"\)/,
    );
  });

  it('finds categorical columns by their splits when the model file has no feature types', async () => {
    const dir = bundleCopy('categorical', (y) => y.replace(/\{name: "channel", type: category, nullable: true, values: \[[^\]]*\], encoding: ordinal\}/, '{name: "channel", type: number, nullable: true}'));
    const modelFile = join(dir, 'model.json');
    writeFileSync(modelFile, readFileSync(modelFile, 'utf8').replace(/"feature_types":\[[^\]]*\],/, ''));
    await bundleFails(dir, /features\[1\]: model column 1 \("channel"\) is categorical \(its splits test category codes\)/);
  });

  it('refuses a category list shorter than the codes the model\'s splits test', async () => {
    await bundleFails(
      bundleCopy('examples/credit', (y) => y.replace(', "WY"]', ']')),
      /features\[4\]\.values: lists 49 values but the model's splits on column 4 \("addr_state"\) test category code 49: the list is short or wrong/,
    );
  });
});
