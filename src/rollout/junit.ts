/** Gate results as JUnit XML, for CI systems: one test case per gate. */
import type { GateReport } from './gates.ts';

const xml = (text: unknown) => String(text).replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');

export function gateJunit(report: GateReport): string {
  const suite = `rtml gate ${report.candidate.name} v${report.candidate.version}`;
  const failures = report.gates.filter((g) => g.status === 'failed').length;
  const skipped = report.gates.filter((g) => g.status === 'skipped').length;
  const time = report.gates.reduce((s, g) => s + g.seconds, 0);
  const cases = report.gates.map((g) => {
    const body =
      g.status === 'failed'
        ? `<failure message="${xml(g.message.slice(0, 500))}">${xml(g.message)}${g.counterexample === undefined ? '' : `\ncounterexample: ${xml(JSON.stringify(g.counterexample))}`}</failure>`
        : g.status === 'skipped'
          ? `<skipped message="${xml(g.message)}"/>`
          : `<system-out>${xml(g.message)}</system-out>`;
    return `    <testcase classname="${xml(`${report.candidate.name}.${g.kind}`)}" name="${xml(g.name)}" time="${g.seconds.toFixed(3)}">${body}</testcase>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="${report.gates.length}" failures="${failures}" skipped="${skipped}" time="${time.toFixed(3)}">\n  <testsuite name="${xml(suite)}" tests="${report.gates.length}" failures="${failures}" skipped="${skipped}" errors="0" time="${time.toFixed(3)}">\n${cases.join('\n')}\n  </testsuite>\n</testsuites>\n`;
}
