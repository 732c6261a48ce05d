/**
 * Every file a bundle names (rtml.yaml, the model, golden file, policy, reference profile)
 * is found through `bundleFile`: after resolving symlinks, of the file and of the bundle
 * folder, it must sit inside the bundle, be a regular file (a FIFO would hang the read, a
 * device never end) and be no larger than its kind allows, all checked with stat before a
 * byte is read. So nothing outside a bundle is ever read, whatever the manifest says and
 * whatever symlinks the folder holds.
 */
import { lstat, realpath, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

export type BundleFileKind = 'manifest' | 'model' | 'golden' | 'policy' | 'reference';

const MiB = 1024 * 1024;

/** The largest file of each kind a bundle may hold; read whole, except the golden file. */
export const MAX_BUNDLE_FILE_BYTES: Readonly<Record<BundleFileKind, number>> = {
  manifest: 4 * MiB,
  policy: 4 * MiB,
  // 1,001 quantiles make ~22 KB per numeric feature: room for some 3,000 features.
  reference: 64 * MiB,
  // Streamed a line at a time, but every line is scored: a bound keeps a check finite.
  golden: 256 * MiB,
  model: 1024 * MiB,
};

/** Why a named file cannot be used. The rule never quotes the file: it may not be the bundle's to show. */
export class BundleFileError extends Error {
  constructor(readonly rule: string) {
    super(rule);
    this.name = 'BundleFileError';
  }
}

/** True when `path` is `dir` itself or below it; both already resolved. */
function isWithin(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function fileType(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The real path of the file `name` in bundle folder `dir`, or null when there is no such
 * file. Throws BundleFileError when `name` leads outside the bundle (`..`, an absolute path,
 * a symlink, or a symlinked folder), is not a regular file, or is over its kind's size.
 */
export async function bundleFile(dir: string, name: string, kind: BundleFileKind): Promise<string | null> {
  const lexical = resolve(dir, name);
  if (isAbsolute(name) || !isWithin(resolve(dir), lexical) || lexical === resolve(dir)) {
    throw new BundleFileError(`must be a path inside the bundle, got ${JSON.stringify(name)}`);
  }
  try {
    await lstat(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw new BundleFileError(`${name} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let real: string;
  let realDir: string;
  try {
    [real, realDir] = await Promise.all([realpath(lexical), realpath(dir)]);
  } catch {
    // lstat found an entry that does not resolve: a symlink to nothing (or somewhere unreadable).
    throw new BundleFileError(`${name} is a symlink that does not resolve to a file in the bundle`);
  }
  if (!isWithin(realDir, real)) throw new BundleFileError(`${name} resolves outside the bundle (through a symlink): a bundle's files must be inside its folder`);
  const st = await stat(real);
  if (!st.isFile()) throw new BundleFileError(`${name} is ${fileType(st)}, not a regular file`);
  const limit = MAX_BUNDLE_FILE_BYTES[kind];
  if (st.size > limit) throw new BundleFileError(`${name} has ${st.size} bytes, over the limit of ${limit / MiB} MiB for a ${kind} file`);
  return real;
}

/**
 * Where to write the file `name` of a bundle (`rtml profile`'s reference): the real path of
 * the file or, when it does not exist yet, of its folder, which must be inside the bundle as
 * for reading, so a symlinked folder cannot send the write elsewhere.
 */
export async function bundleFileForWriting(dir: string, name: string, kind: BundleFileKind): Promise<string> {
  const existing = await bundleFile(dir, name, kind);
  if (existing !== null) return existing;
  const lexical = resolve(dir, name);
  let folder: string;
  let realDir: string;
  try {
    [folder, realDir] = await Promise.all([realpath(dirname(lexical)), realpath(dir)]);
  } catch {
    throw new BundleFileError(`${name} cannot be written: its folder does not exist in the bundle`);
  }
  if (!isWithin(realDir, folder)) throw new BundleFileError(`${name} would be written outside the bundle (through a symlinked folder)`);
  return join(folder, basename(lexical));
}
