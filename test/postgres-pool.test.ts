/**
 * The PostgreSQL pool every shared store uses (src/store/postgres.ts openPool): a connection
 * that dies while checked out (PostgreSQL killed or restarted mid-transaction) fails that
 * connection's queries, which the stores turn into "unavailable" answers, and nothing else:
 * no exception thrown at the process (which would kill a server), and the pool carries on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openPool } from '../src/store/postgres.ts';
import { startPostgres, type RunningPostgres } from './helpers/postgres-server.ts';

describe('PostgreSQL pool', () => {
  let postgres: RunningPostgres;
  before(async () => {
    postgres = await startPostgres();
  });
  after(async () => {
    await postgres.stop();
  });

  it('a checked-out connection terminated by the server fails its queries, throws nothing at the process, and the pool carries on', async () => {
    const uncaught: unknown[] = [];
    const catcher = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', catcher);
    const idleErrors: Error[] = [];
    const pool = openPool(postgres.url, { max: 2 }, (err) => idleErrors.push(err));
    try {
      const client = await pool.connect();
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
      // Another connection terminates this one's backend while it is checked out and idle.
      await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
      await ended;
      await new Promise((resolve) => setImmediate(resolve));
      await assert.rejects(client.query('SELECT 1'), /not queryable|terminated|Connection/);
      client.release(new Error('terminated'));
      assert.deepEqual(uncaught, [], 'no exception thrown at the process');
      assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0].one, 1, 'the pool serves new connections');
    } finally {
      process.off('uncaughtException', catcher);
      await pool.end();
    }
  });
});
