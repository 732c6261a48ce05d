/**
 * Configuration files (bundle manifests, policies) are YAML read with their locations, so
 * every problem can name the file, the line, the YAML path and the rule it breaks.
 */
import { isNode, LineCounter, parseDocument } from 'yaml';

/** One problem in a configuration file, located as precisely as possible. */
export interface ConfigProblem {
  file: string;
  /** YAML path, e.g. `features[2].min`; '' for the whole file. */
  path: string;
  line?: number;
  /** What the problem is in, when that has a name of its own (a rule's code). */
  code?: string;
  rule: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ''}: ${p.path ? `${p.path}${p.code ? ` (${p.code})` : ''}: ` : ''}${p.rule}`;
}

/** Base of the errors a configuration loader throws: every problem found, not only the first. */
export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

/** `features[2].min` from ['features', 2, 'min']. */
export function yamlPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

/** Line of the deepest node of `path` that exists in the document. */
export type Locate = (path: readonly PropertyKey[]) => number | undefined;

export type YamlRead = { ok: true; value: unknown; locate: Locate } | { ok: false; problems: ConfigProblem[] };

/** Parses YAML text, refusing duplicate keys and alias bombs; syntax errors come back as problems. */
export function readYaml(text: string, file: string): YamlRead {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return { ok: false, problems: doc.errors.slice(0, 20).map((e) => ({ file, path: '', line: lineCounter.linePos(e.pos[0]).line, rule: `YAML syntax: ${e.message.split('\n')[0]}` })) };
  }
  const locate: Locate = (path) => {
    const keys = path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    for (let n = keys.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  return { ok: true, value: doc.toJS({ maxAliasCount: 100 }), locate };
}
