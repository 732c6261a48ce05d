#!/usr/bin/env node
// Runs the compiled CLI in dist/ (built by `npm ci`, `npm install` or `npm run build`) when the
// build is complete and no file under src/ is newer than it. Otherwise it runs the TypeScript
// sources through tsx: the same code, but start-up takes about twice as long; it says so on
// stderr when a person is watching (a terminal), not into other programs' pipes.
// RTML_RUNTIME=source always runs the sources; RTML_RUNTIME=dist always runs dist/.
import { readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const runtime = process.env.RTML_RUNTIME;

/** Why dist/ cannot be run as the current code, or null when it can. */
function staleBuild() {
  let built;
  try {
    built = statSync(new URL('dist/.built', root)).mtimeMs;
  } catch {
    return 'dist/ is not built';
  }
  const src = new URL('src/', root);
  for (const file of readdirSync(src, { recursive: true })) {
    if (statSync(new URL(file, src)).mtimeMs > built) return `src/${file} changed after dist/ was built`;
  }
  return null;
}

const stale = runtime === 'source' ? 'RTML_RUNTIME=source' : runtime === 'dist' ? null : staleBuild();
if (stale === null) {
  await import('../dist/cli/main.js');
} else {
  // Cluster workers (`serve --workers`) start through this file too: the primary has already said it.
  if (runtime !== 'source' && process.stderr.isTTY && process.env.NODE_UNIQUE_ID === undefined) {
    process.stderr.write(`rtml: running the TypeScript sources through tsx (${stale}; \`npm run build\` for the faster start)\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
