/** `rtml rollout` against a real server: shadow, status, promote (and refused), rollback, with exit codes. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lendingClubRows, startServer, type RunningServer } from './helpers/server.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const ADMIN_TOKEN = 'rollout-cli-admin-token-0123456789';

function rtml(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/rtml.mjs'), ...args], { cwd: ROOT, env: { ...process.env, RTML_TOKEN: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('rtml rollout', { timeout: 300_000 }, () => {
  let server: RunningServer;
  let tokenFile: string;
  before(async () => {
    const repo = tempDir('rtml-rollout-cli-');
    for (const [v, src] of [
      ['1', 'examples/credit'],
      ['2', 'examples/candidates/credit/v2'],
      ['3', 'examples/candidates/credit/v3'],
    ]) {
      mkdirSync(join(repo, 'credit', v), { recursive: true });
      for (const f of ['rtml.yaml', 'model.json', 'golden.jsonl', 'policy.yaml', ...(v === '1' ? ['reference.json'] : [])]) cpSync(join(ROOT, src, f), join(repo, 'credit', v, f));
    }
    server = await startServer({ repository: repo, env: { RTML_ADMIN_TOKEN: ADMIN_TOKEN } });
    tokenFile = join(tempDir('rtml-token-'), 'admin');
    writeFileSync(tokenFile, `${ADMIN_TOKEN}\n`);
  });
  after(async () => {
    await server?.stop();
  });

  it('promotes, shadows, reports, refuses a promotion whose gates fail (exit 1) and rolls back', async () => {
    const common = ['--url', server.url, '--token-file', tokenFile, '--by', 'ops'];
    const back = await rtml(['rollout', 'promote', 'credit', '1', ...common, '--reason', 'start from v1']);
    assert.equal(back.status, 0, back.stderr);
    assert.match(back.stdout, /credit: 1 is champion \(was 3\)/);
    const shadow = await rtml(['rollout', 'shadow', 'credit', '2', '--share', '1', ...common]);
    assert.equal(shadow.status, 0, shadow.stderr);
    assert.match(shadow.stdout, /champion 1, 2 shadowing 100% of requests/);
    for (const row of await lendingClubRows(50)) assert.equal((await server.post('/v1/services/credit/decisions', row)).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    const status = await rtml(['rollout', 'status', 'credit', ...common]);
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /credit: champion 1 \(versions 1, 2, 3\)/);
    assert.match(status.stdout, /2 shadow \(100% of requests\): 50 compared, \d+ flips/);
    const refused = await rtml(['rollout', 'promote', 'credit', '3', ...common]);
    assert.equal(refused.status, 1, refused.stdout + refused.stderr);
    assert.match(refused.stdout, /FAILED  case: a prime borrower is approved/);
    assert.match(refused.stderr, /promotion of 3 refused: gates failed/);
    const stop = await rtml(['rollout', 'rollback', 'credit', ...common]);
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /challengers 2 stopped; champion 1/);
    const bad = await rtml(['rollout', 'canary', 'credit', '2', '--share', '1.5', '--key', 'addr_state', ...common]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /a share is a fraction in \(0, 1\]/);
    const anonymous = await rtml(['rollout', 'rollback', 'credit', '--url', server.url]);
    assert.equal(anonymous.status, 2);
    assert.match(anonymous.stderr, /401/);
  });
});
