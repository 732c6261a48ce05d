/**
 * Names people type: feature names in requests and file headers, names in rule expressions.
 * A near-miss (`Income` for `income`, `annual-inc` for `annual_inc`, one letter off) is the
 * plausible mistake that otherwise scores silently on a missing value, so callers turn it
 * into an error that says "did you mean".
 */

/** Case, spaces, `_`, `-` and `.` do not distinguish names a person would tell apart. */
export function looseName(name: string): string {
  return name.toLowerCase().replace(/[\s_.-]+/g, '');
}

/** The candidate within a small edit distance (or equal but for case), if any. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > 100) return undefined;
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.max(1, Math.floor(word.length / 3)) + 1);
  for (const c of candidates) {
    if (c.toLowerCase() === word.toLowerCase()) return c;
    if (Math.abs(c.length - word.length) >= bestDistance || c.length > 100) continue;
    const d = editDistance(word, c);
    if (d < bestDistance) {
      bestDistance = d;
      best = c;
    }
  }
  return best;
}

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * For each expected name that is absent, the present-but-unexpected name that looks like it:
 * the same but for case, spaces, `_`, `-`, `.` (always), or one edit away on a loose form of
 * five or more characters (two on ten or more). Each present name is used once, and only
 * names a caller did not expect are offered, so a real column is never "corrected".
 */
export function nearMisses(absent: Iterable<string>, unexpected: Iterable<string>): Map<string, string> {
  const found = new Map<string, string>();
  const pool = [...unexpected].filter((n) => n.length <= 200);
  if (pool.length === 0) return found;
  const byLoose = new Map<string, string>();
  for (const n of pool) if (!byLoose.has(looseName(n))) byLoose.set(looseName(n), n);
  const used = new Set<string>();
  const looseOnly = [...byLoose.keys()];
  for (const name of absent) {
    const loose = looseName(name);
    let match = byLoose.get(loose);
    if (match === undefined && loose.length >= 5 && looseOnly.length <= 1000) {
      const limit = loose.length >= 10 ? 2 : 1;
      let best = limit + 1;
      for (const candidate of looseOnly) {
        if (Math.abs(candidate.length - loose.length) > limit) continue;
        const d = editDistance(loose, candidate);
        if (d < best) {
          best = d;
          match = byLoose.get(candidate);
        }
      }
    }
    if (match !== undefined && !used.has(match)) {
      used.add(match);
      found.set(name, match);
    }
  }
  return found;
}
