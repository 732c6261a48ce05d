/**
 * The model repository's loads (src/server/repository.ts): one load per service at a time,
 * whoever asks (the folder watcher and the load endpoint may ask at once).
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ModelRepository } from '../src/server/repository.ts';
import { creditRepository } from './helpers/server.ts';

/** A repository whose log lines are kept: the messages, in order. */
function repositoryWithLog(root: string): { repository: ModelRepository; messages: string[] } {
  const messages: string[] = [];
  const keep = (_obj: object, msg: string) => messages.push(msg);
  return { repository: new ModelRepository(root, { info: keep, warn: keep, error: keep }), messages };
}

describe('model repository loads', () => {
  it('does not load a service twice at once: a second request for the same files gets the load under way', async () => {
    const { repository, messages } = repositoryWithLog(creditRepository());
    try {
      const [a, b] = await Promise.all([repository.load('credit'), repository.load('credit')]);
      assert.equal(a, b);
      assert.equal(a.defaultVersion, b.defaultVersion);
      assert.deepEqual(messages, ['service loaded']);
    } finally {
      await repository.close();
    }
  });

  it('loads files that changed while a load was under way again, after it', async () => {
    const root = creditRepository();
    const { repository, messages } = repositoryWithLog(root);
    try {
      const first = repository.load('credit');
      // A change on disk after the first load read the folder: the second request must see it.
      appendFileSync(join(root, 'credit/policy.yaml'), '\n# changed\n');
      const second = repository.load('credit');
      const loadedFirst = (await first).defaultVersion;
      const loadedSecond = (await second).defaultVersion;
      assert.notEqual(loadedFirst, loadedSecond);
      assert.deepEqual(messages, ['service loaded', 'service reloaded']);
    } finally {
      await repository.close();
    }
  });
});
