/**
 * The ONNX runtime scores a batch as one tensor, and refuses corrupt files and graphs it
 * cannot feed with a clear load error.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadModel, ModelLoadError } from '../src/models/index.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const MLP = join(ROOT, 'test/fixtures/bundles/onnx_mlp/model.onnx');

async function loadFails(bytes: Uint8Array, pattern: RegExp, options = {}): Promise<void> {
  const file = join(tempDir(), 'model.onnx');
  writeFileSync(file, bytes);
  await assert.rejects(loadModel('onnx', file, options), (err: unknown) => {
    assert.ok(err instanceof ModelLoadError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
}

describe('onnx runtime', () => {
  it('scores a batch as one tensor with the same results as row by row', async () => {
    const model = await loadModel('onnx', MLP, { input: 'input', output: 'probabilities' });
    const rows = 64;
    const x = Float32Array.from({ length: rows * model.inputWidth }, (_, i) => Math.sin(i));
    const batch = await model.predict(x, rows);
    assert.equal(batch.length, rows * model.outputWidth);
    for (let r = 0; r < rows; r += 7) {
      const one = await model.predict(x.slice(r * model.inputWidth, (r + 1) * model.inputWidth), 1);
      for (let j = 0; j < model.outputWidth; j++) assert.ok(Math.abs(one[j] - batch[r * model.outputWidth + j]) < 1e-6);
    }
    await model.close?.();
  });

  it('refuses random bytes, an empty file and a truncated model', async () => {
    await loadFails(new Uint8Array(0), /empty/);
    await loadFails(Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251), /onnxruntime refused it/);
    const real = readFileSync(MLP);
    await loadFails(real.subarray(0, Math.floor(real.length / 2)), /onnxruntime refused it/);
  });

  it('names the inputs and outputs that exist when asked for one that does not', async () => {
    await loadFails(readFileSync(MLP), /no output named "nope"; outputs: /, { output: 'nope' });
    await loadFails(readFileSync(MLP), /no input named "x"; inputs: input/, { input: 'x' });
  });
});
