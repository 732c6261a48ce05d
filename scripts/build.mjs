#!/usr/bin/env node
/**
 * `npm run build`, and `prepare` (so `npm ci` and `npm install` build): the server and CLI as
 * JavaScript in dist/. tsc with tsconfig.build.json (imports of `./x.ts` become `./x.js`), then
 * every other file under src/ copied beside its module: the code loads some by path
 * (`new URL('./sqlite-checkpointer.cjs', import.meta.url)`). dist/.built, written last, marks a
 * complete build: bin/rtml.mjs runs dist/ only when it exists and no file under src/ is newer.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
let assets = 0;
for (const file of readdirSync(src, { recursive: true })) {
  if (file.endsWith('.ts') || !statSync(join(src, file)).isFile()) continue;
  mkdirSync(dirname(join(dist, file)), { recursive: true });
  cpSync(join(src, file), join(dist, file));
  assets++;
}
writeFileSync(join(dist, '.built'), `${new Date().toISOString()}\n`);
process.stderr.write(`rtml: built dist/ (${assets} asset${assets === 1 ? '' : 's'} copied)\n`);
