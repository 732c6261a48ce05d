/**
 * Seeded pseudo-random generators for tests: the same seed gives the same stream on every
 * run, so a failure can be replayed. Each returns a function giving the next number in
 * [0, 1).
 *
 * Tests are tuned to the exact stream of the generator they use (thresholds, counts of
 * detections, the rows a comparison happens to probe), so these are several algorithms,
 * each kept bit for bit as the tests first wrote it. Do not swap one for another or "fix"
 * one without re-checking the tests that use it.
 */

/** mulberry32: 32-bit state, good statistical quality; the default for new tests. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Park and Miller's minimal standard Lehmer generator (multiplier 16807, modulus 2^31 - 1;
 * C++'s minstd_rand0). Exact in doubles. The seed should be in 1 .. 2^31 - 2.
 */
export function minstd0(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

/**
 * The same Lehmer generator with Park and Miller's later multiplier 48271 (C++'s
 * minstd_rand). Exact in doubles. The seed should be in 1 .. 2^31 - 2.
 */
export function minstd(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 48271) % 2147483647) / 2147483647;
}

/**
 * The ANSI C rand() linear congruential step (a = 1103515245, c = 12345, modulus 2^31),
 * computed in doubles as the test that uses it always has: the product passes 2^53 and is
 * rounded, so this is not the textbook integer sequence, only a fixed, repeatable one.
 */
export function ansiCLcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}
