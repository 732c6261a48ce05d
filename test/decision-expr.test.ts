/**
 * The rule condition language: parsed by hand into an AST and compiled to closures, never
 * evaluated as JavaScript. A rule fires only when its condition is exactly true, so a
 * missing value or a type mismatch can never make a rule fire, except through missing().
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileExpr, ExprError, parseExpr, type CompileOptions, type Value } from '../src/decision/expr.ts';

const value = (text: string, row: Record<string, unknown> = {}, options?: CompileOptions): Value => compileExpr(text, { result: 'any', ...options }).evaluate(row);
const fires = (text: string, row: Record<string, unknown> = {}, options?: CompileOptions): boolean => compileExpr(text, options).test(row);

function fails(text: string, pattern: RegExp, options?: CompileOptions): ExprError {
  let caught: unknown;
  try {
    compileExpr(text, options);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ExprError, `expected ExprError for ${JSON.stringify(text)}, got ${String(caught)}`);
  assert.match(caught.message, pattern);
  return caught;
}

describe('expression literals and names', () => {
  it('reads numbers, strings in either quotes, booleans', () => {
    assert.equal(value('42'), 42);
    assert.equal(value('1.5e3'), 1500);
    assert.equal(value('.25'), 0.25);
    assert.equal(value('"a b"'), 'a b');
    assert.equal(value("'it\\'s'"), "it's");
    assert.equal(value('true'), true);
    assert.equal(value('false'), false);
    assert.equal(value('null'), undefined);
  });

  it('reads names with dots and underscores, and backquoted names with any characters', () => {
    const row = { 'bureau.score_v2': 700, 'weird name (%)': 3, in: 'reserved word' };
    assert.equal(value('bureau.score_v2', row), 700);
    assert.equal(value('`weird name (%)`', row), 3);
    assert.equal(value('`in`', row), 'reserved word');
  });

  it('lists the names an expression reads, once each, in order', () => {
    assert.deepEqual(compileExpr('b > 1 and a < 2 or missing(b)').names, ['b', 'a']);
  });

  it('folds a leading minus into number literals', () => {
    assert.deepEqual(parseExpr('-3'), { kind: 'literal', pos: 0, value: -3 });
  });
});

describe('expression precedence', () => {
  it('binds not tighter than and, and tighter than or: not a or b and c = (not a) or (b and c)', () => {
    for (const a of [true, false]) {
      for (const b of [true, false]) {
        for (const c of [true, false]) {
          assert.equal(fires('not a or b and c', { a, b, c }), !a || (b && c), `a=${a} b=${b} c=${c}`);
        }
      }
    }
  });

  it('binds comparisons tighter than not: not x > 5 = not (x > 5)', () => {
    assert.equal(fires('not x > 5', { x: 3 }), true);
    assert.equal(fires('not x > 5', { x: 7 }), false);
  });

  it('does * and / before + and -, left to right, with parentheses overriding', () => {
    assert.equal(value('1 + 2 * 3'), 7);
    assert.equal(value('(1 + 2) * 3'), 9);
    assert.equal(value('8 / 4 / 2'), 1);
    assert.equal(value('10 - 4 - 3'), 3);
    assert.equal(value('-2 * -x', { x: 3 }), 6);
    assert.equal(value('- -x', { x: 3 }), 3);
  });

  it('does not chain comparisons', () => {
    fails('1 < x < 3', /comparisons do not chain at column 7.*write 'a < b and b < c'/);
  });
});

describe('comparisons and arithmetic', () => {
  it('computes ratios such as debt burden', () => {
    const rule = compileExpr('funded_amnt / annual_inc > 0.4');
    assert.equal(rule.test({ funded_amnt: 30000, annual_inc: 50000 }), true);
    assert.equal(rule.test({ funded_amnt: 10000, annual_inc: 50000 }), false);
  });

  it('compares numbers numerically, strings by code unit order, booleans with == and != only', () => {
    assert.equal(fires('x >= 2', { x: 2 }), true);
    assert.equal(fires('x != 2', { x: 2 }), false);
    assert.equal(fires('g <= "B5"', { g: 'B2' }), true);
    assert.equal(fires('g <= "B5"', { g: 'C1' }), false);
    assert.equal(fires('flag == true', { flag: true }), true);
    assert.equal(fires('flag != true', { flag: false }), true);
    assert.equal(value('flag < other', { flag: false, other: true }), undefined);
    fails('flag < true', /booleans can only be compared with == and != at column 6/);
  });

  it('puts literals on either side', () => {
    assert.equal(fires('3 < x', { x: 4 }), true);
    assert.equal(fires('3 < x', { x: 2 }), false);
  });

  it('compares two names', () => {
    assert.equal(fires('a < b', { a: 1, b: 2 }), true);
    assert.equal(fires('a == b', { a: 'x', b: 'x' }), true);
  });

  it('gives missing, never Infinity or NaN, for division by zero and overflow', () => {
    assert.equal(value('a / b', { a: 1, b: 0 }), undefined);
    assert.equal(value('a / b', { a: 0, b: 0 }), undefined);
    assert.equal(value('a * a', { a: 1e200 }), undefined);
    assert.equal(fires('a / b > 0.4', { a: 1, b: 0 }), false);
    assert.equal(fires('not (a / b > 0.4)', { a: 1, b: 0 }), false);
    assert.equal(fires('missing(a / b)', { a: 1, b: 0 }), true);
  });

  it('has abs, min, max and coalesce', () => {
    assert.equal(value('abs(x)', { x: -2 }), 2);
    assert.equal(value('min(a, b, 3)', { a: 5, b: 4 }), 3);
    assert.equal(value('max(a, b)', { a: 5, b: 4 }), 5);
    assert.equal(value('max(a, b)', { a: 5 }), undefined);
    assert.equal(value('coalesce(a, b, 0)', { b: 7 }), 7);
    assert.equal(value('coalesce(a, 0)', { a: null }), 0);
  });
});

describe('in lists', () => {
  it('tests membership, with a trailing comma allowed', () => {
    assert.equal(fires('s in ["CA", "NY",]', { s: 'NY' }), true);
    assert.equal(fires('s in ["CA", "NY"]', { s: 'TX' }), false);
    assert.equal(fires('s not in ["CA", "NY"]', { s: 'TX' }), true);
    assert.equal(fires('n in [0, 1, -1]', { n: -1 }), true);
  });

  it('is unknown, for both in and not in, when the value is missing or of another type', () => {
    for (const row of [{}, { s: null }, { s: 36 }]) {
      assert.equal(fires('s in ["term_36"]', row), false);
      assert.equal(fires('s not in ["term_36"]', row), false);
    }
  });

  it('takes literals only, and at least one', () => {
    fails('s in [t]', /expected a number, string, true or false in the list at column 7/);
    fails('s in []', /at column 7/);
    fails('s in "CA"', /expected '\[' to start the list after 'in' at column 6/);
    fails('s in ["a" "b"]', /expected ',' or '\]' at column 11/);
  });
});

describe('missing values (three-valued logic)', () => {
  it('reads absent, null, NaN and non-scalar values as missing', () => {
    for (const row of [{}, { x: null }, { x: undefined }, { x: NaN }, { x: { nested: 1 } }, { x: [1] }]) {
      assert.equal(value('x', row), undefined);
      assert.equal(fires('missing(x)', row), true);
      assert.equal(fires('present(x)', row), false);
    }
    assert.equal(fires('missing(x)', { x: 0 }), false);
    assert.equal(fires('missing(x)', { x: '' }), false);
  });

  it('never fires a comparison on a missing value, not even negated', () => {
    for (const text of ['x > 5', 'x <= 5', 'x == 5', 'x != 5', 'not (x > 5)', 'not x == 5', 'x + 1 > 0', '-x < 0', 'abs(x) >= 0']) {
      assert.equal(fires(text, {}), false, text);
    }
  });

  it('never fires on a type mismatch', () => {
    assert.equal(fires('x > 5', { x: '7' }), false);
    assert.equal(fires('not (x > 5)', { x: '7' }), false);
    assert.equal(fires('x == "7"', { x: 7 }), false);
    assert.equal(fires('x != "7"', { x: 7 }), false);
    assert.equal(fires('x + 1 > 0', { x: true }), false);
    assert.equal(fires('not x', { x: 0 }), false);
  });

  it('follows Kleene logic: false and unknown = false, true or unknown = true', () => {
    assert.equal(value('x > 5 and y > 5', { y: 1 }), false);
    assert.equal(value('x > 5 and y > 5', { y: 9 }), undefined);
    assert.equal(value('x > 5 or y > 5', { y: 9 }), true);
    assert.equal(value('x > 5 or y > 5', { y: 1 }), undefined);
    assert.equal(value('not (x > 5)', {}), undefined);
  });

  it('handles missing values on purpose with missing(), present() and coalesce()', () => {
    const rule = compileExpr('missing(annual_inc) or annual_inc < 12000');
    assert.equal(rule.test({}), true);
    assert.equal(rule.test({ annual_inc: 5000 }), true);
    assert.equal(rule.test({ annual_inc: 50000 }), false);
    assert.equal(fires('coalesce(delinq_2yrs, 0) >= 2', {}), false);
    assert.equal(fires('coalesce(delinq_2yrs, 9) >= 2', {}), true);
  });
});

describe('hostile input', () => {
  it('reads only own properties of the row, never Object.prototype', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      assert.equal(value(`\`${name}\``, {}), undefined, name);
      assert.equal(fires(`missing(\`${name}\`)`, {}), true, name);
    }
    assert.equal(value('constructor', {}), undefined);
    assert.equal(fires('present(constructor)', {}), false);
    assert.equal(value('__proto__', {}), undefined);
  });

  it('reads a row that really has such keys, as JSON.parse makes them', () => {
    const row = JSON.parse('{"__proto__": 5, "constructor": "x"}');
    assert.equal(value('__proto__', row), 5);
    assert.equal(value('constructor', row), 'x');
    assert.equal(fires('__proto__ > 4', row), true);
  });

  it('works on null-prototype rows', () => {
    const row = Object.assign(Object.create(null), { x: 3 });
    assert.equal(fires('x == 3', row), true);
  });

  it('refuses text longer than the limit', () => {
    fails(`x > ${'1'.repeat(2100)}`, /2104 characters long; the limit is 2000/);
    fails('x > 100', /the limit is 5/, { maxLength: 5 });
  });

  it('refuses nesting deeper than the limit', () => {
    fails(`${'('.repeat(65)}x${')'.repeat(65)} > 1`, /nests deeper than 64 levels at column 65/);
    fails(`${'not '.repeat(100)}x`, /nests deeper than 64 levels/);
    fails(`${'-'.repeat(100)}x > 0`, /nests deeper than 64 levels/);
    fails(`${'abs('.repeat(70)}x${')'.repeat(70)} > 0`, /nests deeper than 64 levels/);
    assert.equal(fires(`${'('.repeat(60)}x${')'.repeat(60)} > 1`, { x: 2 }), true);
  });

  it('evaluates a long flat chain within the length limit', () => {
    const text = Array.from({ length: 300 }, (_, i) => `x != ${i}`).join(' and ');
    assert.ok(text.length < 2000 * 2);
    assert.equal(fires(text, { x: 1000 }, { maxLength: 5000 }), true);
  });

  it('has no way to call JavaScript: only the listed functions exist', () => {
    fails('eval("1")', /unknown function "eval" at column 1.*functions are missing, present, abs, min, max, coalesce/);
    fails('constructor("return 1")', /unknown function "constructor"/);
    assert.equal(value('x.constructor', { x: 1 }), undefined);
  });

  it('refuses control characters and unknown symbols', () => {
    fails('x > 1 ; y', /unexpected character ";" at column 7/);
    fails('x > 1\u0000', /unexpected character "\\\\u0000" at column 6/);
  });
});

describe('errors name the column and what was expected', () => {
  it('reports an unclosed parenthesis where input ends, and where it opened', () => {
    const err = fails('score > 0.5 and (x < 3', /^expected '\)' at column 23 in "score > 0\.5 and \(x < 3" \(found end of input; '\(' opened at column 17\)$/);
    assert.equal(err.column, 23);
    assert.equal(err.position, 22);
    assert.equal(err.reason, `expected ')'`);
  });

  it('explains common slips from other languages', () => {
    fails('x = 3', /unexpected '=' at column 3.*write '=='/);
    fails('a && b', /unexpected '&&' at column 3.*write 'and'/);
    fails('a || b', /write 'or'/);
    fails('!a', /write 'not'/);
  });

  it('reports missing operands, stray tokens and unterminated strings', () => {
    fails('x >', /expected a value .* at column 4 .*found end of input/);
    fails('x > 5 y', /unexpected name "y" at column 7/);
    fails('x > 5)', /unexpected '\)' at column 6.*closes nothing/);
    fails('s == "abc', /unterminated string at column 6/);
    fails('`abc', /unterminated `name` at column 1/);
    fails('3x > 1', /unexpected "x" after the number 3 at column 2/);
    fails('', /empty expression/);
    fails('1e999 > x', /out of range at column 1/);
  });

  it('checks function arity', () => {
    fails('missing(a, b)', /missing\(\) takes 1 argument, got 2 at column 1/);
    fails('min(a) > 1', /min\(\) takes 2 to 16 arguments, got 1/);
  });

  it('requires a condition to be true/false', () => {
    fails('1 + 2', /a condition must be true or false, but this expression is a number/);
    fails('"yes"', /is a string/);
    fails('a and 3', /'and' needs true\/false conditions, got a number at column 3/);
  });
});

describe('names and types checked at compile time', () => {
  const knownNames = ['annual_inc', 'delinq_2yrs', 'term', 'score', 'verified'];
  const types = {
    annual_inc: 'number',
    delinq_2yrs: 'number',
    term: { category: ['term_36', 'term_60'] },
    score: 'number',
    verified: 'boolean',
  } as const;

  it('reports unknown names with a suggestion', () => {
    fails('delinq_2yr >= 2', /unknown name "delinq_2yr" at column 1.*did you mean "delinq_2yrs"\?/, { knownNames });
    fails('score > 0.5 and anual_inc < 1', /unknown name "anual_inc" at column 17.*did you mean "annual_inc"/, { knownNames });
    fails('zzz > 1', /unknown name "zzz" at column 1 in "zzz > 1"$/, { knownNames });
  });

  it('does not treat prototype names as known', () => {
    fails('constructor > 1', /unknown name "constructor"/, { knownNames });
    fails('`__proto__` > 1', /unknown name "__proto__"/, { knownNames });
  });

  it('refuses comparisons that could never be true', () => {
    fails('term == 36', /cannot compare string with number at column 6/, { knownNames, types });
    fails('annual_inc > "50000"', /cannot compare number with string/, { knownNames, types });
    fails('verified > false', /booleans can only be compared with == and !=/, { knownNames, types });
    fails('term in [36, 60]', /a string is never in this list/, { knownNames, types });
    fails('x == null', /cannot compare with null.*use missing\(x\)/);
    fails('annual_inc + term > 0', /'\+' needs numbers, got a string at column 12/, { knownNames, types });
  });

  it('refuses category values the feature does not have', () => {
    fails('term == "term_63"', /"term_63" is not a value of term at column 9.*values: term_36, term_60/, { knownNames, types });
    fails('term in ["term_36", "36 months"]', /"36 months" is not a value of term at column 21/, { knownNames, types });
    fails('"Term_36" != term', /did you mean "term_36"/, { knownNames, types });
    assert.equal(compileExpr('term != "term_60"', { knownNames, types }).test({ term: 'term_36' }), true);
  });

  it('reads accessor names through the accessor and the extra argument, never from the row', () => {
    const accessors = new Map([['score', (_row: unknown, extra: unknown) => (extra as { score: number }).score]]);
    const rule = compileExpr('score > 0.5 and annual_inc > 1000', { knownNames: ['annual_inc'], accessors });
    assert.equal(rule.test({ annual_inc: 5000 }, { score: 0.7 }), true);
    assert.equal(rule.test({ annual_inc: 5000, score: 0.9 }, { score: 0.1 }), false, 'a row field named score is not the score');
    assert.equal(rule.test({ annual_inc: 5000 }, { score: NaN }), false, 'NaN from an accessor is missing');
  });

  it('reports the static type of the result', () => {
    assert.equal(compileExpr('annual_inc / 12', { knownNames, types, result: 'any' }).type, 'number');
    assert.equal(compileExpr('undeclared', { result: 'any' }).type, 'any');
    assert.equal(compileExpr('verified and annual_inc > 1', { knownNames, types }).type, 'boolean');
  });
});
