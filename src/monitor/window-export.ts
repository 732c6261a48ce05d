/**
 * One process's monitor windows as a compact binary export, and the merge of several
 * processes' exports into one window set that ServiceMonitor's evaluation reads unchanged
 * (a WindowSource): how a fleet's replicas are monitored as one service.
 *
 * Format (little-endian; version 1):
 *   header:  'RTMW' u32, format u16, layout fingerprint u32, layout cells u32, exported_at f64
 *   count:   present u8; N u32, block size u32, blocks u32; per block (oldest first):
 *            first_at f64, last_at f64, histogram, per numeric column: n u32 + n × f64 raw values
 *   time:    windows u16; per window: name str, duration f64, buckets u32, exported u32;
 *            per exported bucket: period f64, histogram
 *   histogram: layout cells × f64, then fallbacks and counters: n u16 + n × (key str, value f64)
 *   str:     byte length u16 + UTF-8
 * Only non-empty blocks and buckets travel. A histogram is its Float64 cells as they are, so
 * merging is the same addition (min/max for those cells) as within one process. Between
 * processes the export travels deflated (`packWindowExport`, in libuv's thread pool): mostly
 * zero cells and small integers, so a day-old credit monitor's 600 KB become about 25-60 KB.
 *
 * What a merge gives, against one process that saw every decision of the fleet:
 *   - Time windows: exact. Buckets are keyed by wall-clock period (⌊t / width⌋), so replicas'
 *     buckets of one period add up to the bucket one process would hold (up to the order of
 *     floating-point additions in the moment sums; counts are integers, exact). Clock skew
 *     between machines moves a decision into a neighbouring bucket, as it would move its time.
 *   - Count window ("the last N decisions"): the fleet's blocks newest first (by the time of
 *     their latest observation) until they hold at least N observations. With k replicas and
 *     blocks of b = ⌈N/B⌉: the merge covers between N and N + b − 1 observations (all of them
 *     when the fleet has fewer), it holds every fleet decision later than the last block taken
 *     ends, and it differs from the fleet's exact last N decisions by at most (k + 1) · b rows
 *     (at most one partly older block per replica, plus the rounding up to whole blocks). With
 *     the default N = 1,000, B = 10 and 3 replicas: 1,000 to 1,099 rows, at most 400 differ.
 *   - KS raw values: exact on the rows they cover: every non-missing value of the blocks taken,
 *     except rows that had already left their replica's ring of the last N (only in a replica's
 *     oldest block, once it covers more than N rows).
 * No sketches: every quantity is a sum, a min/max, or the raw values themselves.
 */
import { promisify } from 'node:util';
import { deflateRaw, inflateRaw } from 'node:zlib';
import { COUNT_WINDOW, ProfileHistogram, type MonitorWindows, type ProfileLayout, type WindowSource } from './histogram.ts';

const MAGIC = 0x574d5452; // 'RTMW' read little-endian
/** Float64Arrays are copied as bytes where the machine's order is the format's (x86, ARM): ten times faster than a DataView per cell. */
const LITTLE_ENDIAN = new Uint8Array(new Float64Array([1]).buffer)[7] === 0x3f;
export const WINDOW_EXPORT_FORMAT = 1;

/** A number that changes when two layouts could not be merged (column names, kinds, bins, cells). */
export function layoutFingerprint(layout: ProfileLayout): number {
  const parts: string[] = [String(layout.size)];
  for (const c of layout.columns) {
    const spec = c.spec;
    parts.push(spec.kind, spec.name, spec.kind === 'numeric' ? `${spec.edges.join(',')}|${c.lo}|${c.hi}|${c.shift}` : spec.categories.join(','));
  }
  parts.push(layout.contributionFeatures.join(','));
  // FNV-1a, 32 bits: a check against mixing layouts, not a security measure.
  let h = 0x811c9dc5;
  const text = parts.join(';');
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

class Writer {
  private buf = new Uint8Array(64 * 1024);
  private view = new DataView(this.buf.buffer);
  at = 0;
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.room(1);
    this.view.setUint8(this.at, v);
    this.at += 1;
  }
  u16(v: number): void {
    this.room(2);
    this.view.setUint16(this.at, v, true);
    this.at += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.at, v, true);
    this.at += 4;
  }
  f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.at, v, true);
    this.at += 8;
  }
  f64s(values: Float64Array): void {
    this.room(8 * values.length);
    if (LITTLE_ENDIAN) this.buf.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), this.at);
    else for (let i = 0; i < values.length; i++) this.view.setFloat64(this.at + 8 * i, values[i], true);
    this.at += 8 * values.length;
  }
  str(v: string): void {
    const bytes = Buffer.from(v, 'utf8');
    if (bytes.length > 0xffff) throw new RangeError('string too long for a window export');
    this.u16(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.at);
  }
}

export class WindowExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WindowExportError';
  }
}

class Reader {
  private readonly view: DataView;
  at = 0;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(n: number): void {
    if (this.at + n > this.bytes.length) throw new WindowExportError(`window export truncated at byte ${this.at}`);
  }
  u8(): number {
    this.need(1);
    return this.view.getUint8(this.at++);
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.at, true);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }
  f64s(into: Float64Array): void {
    this.need(8 * into.length);
    if (LITTLE_ENDIAN) new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(this.bytes.subarray(this.at, this.at + 8 * into.length));
    else for (let i = 0; i < into.length; i++) into[i] = this.view.getFloat64(this.at + 8 * i, true);
    this.at += 8 * into.length;
  }
  str(): string {
    const n = this.u16();
    this.need(n);
    const v = Buffer.from(this.bytes.buffer, this.bytes.byteOffset + this.at, n).toString('utf8');
    this.at += n;
    return v;
  }
}

function writeHistogram(w: Writer, h: ProfileHistogram): void {
  w.f64s(h.data);
  for (const map of [h.fallbacks, h.counters]) {
    w.u16(map.size);
    for (const [k, v] of map) {
      w.str(k);
      w.f64(v);
    }
  }
}

function readHistogram(r: Reader, layout: ProfileLayout): ProfileHistogram {
  const h = new ProfileHistogram(layout);
  r.f64s(h.data);
  for (const map of [h.fallbacks, h.counters]) {
    const n = r.u16();
    for (let i = 0; i < n; i++) {
      const k = r.str();
      map.set(k, r.f64());
    }
  }
  return h;
}

/** The windows' state at `now` as bytes (see the format above). Cost: linear in the non-empty blocks and buckets. */
export function exportWindowState(windows: MonitorWindows, now: number): Uint8Array {
  const layout = windows.layout;
  const w = new Writer();
  w.u32(MAGIC);
  w.u16(WINDOW_EXPORT_FORMAT);
  w.u32(layoutFingerprint(layout));
  w.u32(layout.size);
  w.f64(now);
  const cw = windows.countWindow;
  w.u8(cw ? 1 : 0);
  if (cw) {
    const blocks = cw.exportBlocks();
    w.u32(cw.size);
    w.u32(cw.blockSize);
    w.u32(blocks.length);
    for (const b of blocks) {
      w.f64(b.firstAt);
      w.f64(b.lastAt);
      writeHistogram(w, b.histogram);
      for (const values of b.raw) {
        w.u32(values.length);
        w.f64s(values);
      }
    }
  }
  w.u16(windows.timeWindows.length);
  for (const tw of windows.timeWindows) {
    const buckets = tw.exportBuckets(now);
    w.str(tw.name);
    w.f64(tw.duration);
    w.u32(tw.buckets.length);
    w.u32(buckets.length);
    for (const b of buckets) {
      w.f64(b.period);
      writeHistogram(w, b.histogram);
    }
  }
  return w.done();
}

const deflate = promisify(deflateRaw);
const inflate = promisify(inflateRaw);

/** An export deflated, as replicas publish it; the compression runs off the event loop. */
export async function packWindowExport(exported: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await deflate(exported));
}

/** Reads a packed export (see `readWindowExport`); WindowExportError when it does not inflate. */
export async function unpackWindowExport(packed: Uint8Array, layout: ProfileLayout): Promise<WindowExport> {
  let bytes: Uint8Array;
  try {
    bytes = await inflate(packed);
  } catch (err) {
    throw new WindowExportError(`window export does not inflate: ${(err as Error).message}`);
  }
  return readWindowExport(bytes, layout);
}

/** One decoded export. */
export interface WindowExport {
  exportedAt: number;
  count: { size: number; blockSize: number; blocks: { firstAt: number; lastAt: number; histogram: ProfileHistogram; raw: Float64Array[] }[] } | null;
  time: { name: string; duration: number; bucketCount: number; buckets: { period: number; histogram: ProfileHistogram }[] }[];
}

/** Decodes an export made for `layout`; throws WindowExportError when it is not one (another layout, another format, truncated). */
export function readWindowExport(bytes: Uint8Array, layout: ProfileLayout): WindowExport {
  const r = new Reader(bytes);
  if (r.u32() !== MAGIC) throw new WindowExportError('not a window export');
  const format = r.u16();
  if (format !== WINDOW_EXPORT_FORMAT) throw new WindowExportError(`window export format ${format}; this rtml reads ${WINDOW_EXPORT_FORMAT}`);
  if (r.u32() !== layoutFingerprint(layout) || r.u32() !== layout.size) throw new WindowExportError('window export of another layout (another bundle or reference)');
  const exportedAt = r.f64();
  let count: WindowExport['count'] = null;
  if (r.u8() === 1) {
    const size = r.u32();
    const blockSize = r.u32();
    const n = r.u32();
    const blocks: NonNullable<WindowExport['count']>['blocks'] = [];
    for (let i = 0; i < n; i++) {
      const firstAt = r.f64();
      const lastAt = r.f64();
      const histogram = readHistogram(r, layout);
      const raw: Float64Array[] = [];
      for (let c = 0; c < layout.numericColumns.length; c++) {
        const values = new Float64Array(r.u32());
        r.f64s(values);
        raw.push(values);
      }
      blocks.push({ firstAt, lastAt, histogram, raw });
    }
    count = { size, blockSize, blocks };
  }
  const time: WindowExport['time'] = [];
  const windows = r.u16();
  for (let i = 0; i < windows; i++) {
    const name = r.str();
    const duration = r.f64();
    const bucketCount = r.u32();
    const n = r.u32();
    const buckets: WindowExport['time'][number]['buckets'] = [];
    for (let j = 0; j < n; j++) {
      const period = r.f64();
      buckets.push({ period, histogram: readHistogram(r, layout) });
    }
    time.push({ name, duration, bucketCount, buckets });
  }
  return { exportedAt, count, time };
}

/**
 * Several replicas' exports merged into the windows one process seeing all their decisions
 * would hold (see the bounds at the top of the file). The count window is taken once, at
 * construction; time windows are merged per period and snapshot at any `now`.
 */
export class MergedWindows implements WindowSource {
  readonly windowNames: string[];
  /** The merged count window (null without one), and what it covers. */
  readonly count: { histogram: ProfileHistogram; blocks: number; sortedRaw: (Float64Array | null)[] } | null;
  private readonly time = new Map<string, { width: number; bucketCount: number; periods: Map<number, ProfileHistogram> }>();

  constructor(
    readonly layout: ProfileLayout,
    exports: readonly WindowExport[],
    /** The count window's N (the local monitor's); exports disagreeing on it are merged by this one. */
    countSize: number | null,
  ) {
    this.windowNames = [];
    if (countSize !== null) {
      this.windowNames.push(COUNT_WINDOW);
      const blocks = exports.flatMap((e) => e.count?.blocks ?? []);
      // Newest first; an unstamped block (no clock given) counts as oldest.
      blocks.sort((a, b) => (b.lastAt === b.lastAt ? b.lastAt : -Infinity) - (a.lastAt === a.lastAt ? a.lastAt : -Infinity));
      const histogram = new ProfileHistogram(layout);
      const raw: Float64Array[][] = layout.columns.map(() => []);
      let taken = 0;
      for (const b of blocks) {
        if (histogram.observations >= countSize) break;
        histogram.merge(b.histogram);
        b.raw.forEach((values, j) => raw[layout.numericColumns[j]].push(values));
        taken++;
      }
      const sortedRaw = raw.map((parts, c) => {
        if (!layout.columns[c].numeric) return null;
        const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          all.set(p, at);
          at += p.length;
        }
        return all.sort();
      });
      this.count = { histogram, blocks: taken, sortedRaw };
    } else this.count = null;
    for (const e of exports) {
      for (const tw of e.time) {
        let merged = this.time.get(tw.name);
        if (!merged) {
          merged = { width: tw.duration / tw.bucketCount, bucketCount: tw.bucketCount, periods: new Map() };
          this.time.set(tw.name, merged);
          this.windowNames.push(tw.name);
        } else if (merged.width !== tw.duration / tw.bucketCount || merged.bucketCount !== tw.bucketCount) {
          throw new WindowExportError(`time window ${tw.name} has different buckets in two exports`);
        }
        for (const b of tw.buckets) {
          const held = merged.periods.get(b.period);
          if (held) held.merge(b.histogram);
          else merged.periods.set(b.period, b.histogram.clone());
        }
      }
    }
  }

  snapshot(window: string, now: number): ProfileHistogram {
    if (window === COUNT_WINDOW) {
      if (!this.count) throw new RangeError('no count window');
      return this.count.histogram;
    }
    const w = this.time.get(window);
    if (!w) throw new RangeError(`no window ${window}; have ${this.windowNames.join(', ')}`);
    const out = new ProfileHistogram(this.layout);
    const period = Math.floor(now / w.width);
    // In period order, as one process's ring would hold them.
    for (const p of [...w.periods.keys()].sort((a, b) => a - b)) if (p <= period && p > period - w.bucketCount) out.merge(w.periods.get(p)!);
    return out;
  }

  sortedRawValues(feature: string): Float64Array | null {
    const i = this.layout.featureIndex(feature);
    return i < 0 ? null : (this.count?.sortedRaw[i] ?? null);
  }

  sortedRawScores(): Float64Array | null {
    return this.layout.scoreIndex < 0 ? null : (this.count?.sortedRaw[this.layout.scoreIndex] ?? null);
  }

}
