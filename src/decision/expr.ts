/**
 * The condition language of decision policies: a small, safe expression language for
 * rules such as `funded_amnt / annual_inc > 0.4 and verification_status == 'Not_Verified'`.
 *
 * Text goes through a hand-written tokenizer and a recursive-descent parser into an AST,
 * is checked (known names, types when declared, hostile sizes), then compiled once into
 * plain closures. Nothing from configuration text is ever evaluated as JavaScript: no
 * eval, no `new Function`, no code generation.
 *
 * Grammar, loosest binding first:
 *
 *     expr     := or
 *     or       := and ('or' and)*
 *     and      := not ('and' not)*
 *     not      := 'not' not | compare
 *     compare  := sum [ ('<' | '<=' | '>' | '>=' | '==' | '!=') sum
 *                     | 'in' list | 'not' 'in' list ]          (comparisons do not chain)
 *     sum      := product (('+' | '-') product)*
 *     product  := unary (('*' | '/') unary)*
 *     unary    := '-' unary | primary
 *     primary  := number | string | 'true' | 'false' | 'null' | name
 *               | function '(' expr (',' expr)* ')' | '(' expr ')'
 *     list     := '[' literal (',' literal)* [','] ']'     (literals only: numbers, strings, booleans)
 *     name     := [A-Za-z_][A-Za-z0-9_.]*  |  `any text but a backquote`
 *     string   := "..." | '...'                 (escapes: \\ \" \' \n \t)
 *     function := missing | present | abs | min | max | coalesce
 *
 * `and`, `or`, `not`, `in`, `true`, `false`, `null` are reserved; a feature with one of
 * those names is written in backquotes (`in`).
 *
 * Values and missing data (three-valued logic). A value is a number, a string, a boolean,
 * or MISSING. A name reads the row's OWN property only (never the prototype chain, so
 * `__proto__` or `constructor` read as missing unless the row really has that key); it is
 * missing when absent, null, NaN, or not a number/string/boolean.
 *
 * - Arithmetic needs numbers on both sides; anything else, division by zero, or a
 *   non-finite result gives MISSING (never Infinity or NaN).
 * - Comparisons need two values of the same type (numbers numerically, strings by code
 *   unit order, booleans only with == and !=); a missing operand or a type mismatch gives
 *   UNKNOWN, not false.
 * - `x in [..]` is true when x equals a listed value, false when it does not but x has the
 *   type of some listed value, and UNKNOWN when x is missing or of another type.
 * - `and`, `or`, `not` follow Kleene logic: false and UNKNOWN = false, true or UNKNOWN =
 *   true, not UNKNOWN = UNKNOWN.
 * - A rule fires only when its condition is exactly true.
 *
 * So a rule never fires because a value is missing or of the wrong type, even under
 * `not`: with x missing, neither `x > 5` nor `not (x > 5)` fires. Missing data is
 * handled only on purpose, with `missing(x)`, `present(x)` or `coalesce(x, default)`.
 *
 * Functions: `missing(e)` / `present(e)` test whether e is MISSING (they are never
 * unknown); `abs(n)`, `min(a, b, ...)`, `max(a, b, ...)` are numeric and MISSING when any
 * argument is; `coalesce(a, b, ...)` is the first argument that is not missing.
 */
import { closest } from '../config/names.ts';

/** A value during evaluation; `undefined` is MISSING (or UNKNOWN, for a condition). */
export type Value = number | string | boolean | undefined;

/** A row as expressions read it: flat name → JSON value. */
export type Row = Readonly<Record<string, unknown>>;

/**
 * Reads a name some other way than from the row, e.g. the model's score from the `extra`
 * argument of evaluate(). Its result is read like a row value (NaN, null, objects: missing).
 */
export type Accessor = (row: Row, extra: unknown) => unknown;

/**
 * Declared type of a name, for compile-time checks: comparing a number feature with a
 * string, or a category feature with a value it does not have, is refused at load.
 */
export type NameType = 'number' | 'string' | 'boolean' | 'any' | { readonly category: readonly string[] };

export interface CompileOptions {
  /** Names expressions may use; any other name is an error. Omitted: every name is allowed. */
  knownNames?: Iterable<string>;
  /**
   * Names read by an accessor instead of from the row (always known). Every other name is
   * the row's own property of that name.
   */
  accessors?: ReadonlyMap<string, Accessor>;
  /** Declared types of names (a subset is fine). */
  types?: ReadonlyMap<string, NameType> | Readonly<Record<string, NameType>>;
  /** What the whole expression must produce; 'boolean' (default) for conditions. */
  result?: 'boolean' | 'any';
  /** Longest accepted text, in characters. Default 2000. */
  maxLength?: number;
  /** Deepest accepted nesting (parentheses, unary operators, function calls). Default 64. */
  maxDepth?: number;
}

export interface CompiledExpr {
  readonly text: string;
  /** Distinct names the expression reads, in order of first use. */
  readonly names: readonly string[];
  /** The static type of the result, as far as declared types tell. */
  readonly type: StaticType;
  /**
   * The value for a row, read through its own properties only. `extra` is handed to the
   * accessors (the policy passes the model's score and outputs there).
   */
  evaluate(row: Row, extra?: unknown): Value;
  /** True only when the expression evaluates to exactly `true`. */
  test(row: Row, extra?: unknown): boolean;
}

export const DEFAULT_MAX_LENGTH = 2000;
export const DEFAULT_MAX_DEPTH = 64;

/** A problem in an expression, located by column (1-based) in its text. */
export class ExprError extends Error {
  /** 0-based offset in `text`. */
  readonly position: number;
  /** 1-based column in `text`. */
  readonly column: number;
  constructor(
    readonly text: string,
    position: number,
    /** The problem without its location, e.g. `expected ')'`. */
    readonly reason: string,
    /** Extra detail appended after the location, e.g. `found end of input`. */
    readonly detail?: string,
  ) {
    super(`${reason} at column ${position + 1} in ${excerpt(text, position)}${detail ? ` (${detail})` : ''}`);
    this.name = 'ExprError';
    this.position = position;
    this.column = position + 1;
  }
}

function excerpt(text: string, position: number): string {
  if (text.length <= 120) return JSON.stringify(text);
  const from = Math.max(0, position - 50);
  const to = Math.min(text.length, position + 50);
  return `${from > 0 ? '…' : ''}${JSON.stringify(text.slice(from, to))}${to < text.length ? '…' : ''} (${text.length} characters)`;
}

// ---------------------------------------------------------------------------------------
// Tokens

type TokenType = 'number' | 'string' | 'name' | 'keyword' | 'op' | 'end';

interface Token {
  type: TokenType;
  /** Source text for op/keyword/name, the decoded value for string, the number for number. */
  value: string | number;
  pos: number;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'true', 'false', 'null']);
const TWO_CHAR_OPS = new Set(['<=', '>=', '==', '!=']);
const ONE_CHAR_OPS = new Set(['<', '>', '+', '-', '*', '/', '(', ')', '[', ']', ',']);
const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_.]/;
const DIGIT = /[0-9]/;
const NUMBER = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    const start = i;
    if (DIGIT.test(c) || (c === '.' && i + 1 < n && DIGIT.test(text[i + 1]))) {
      const m = NUMBER.exec(text.slice(i, i + 400));
      if (!m) throw new ExprError(text, i, 'malformed number');
      i += m[0].length;
      if (i < n && (NAME_PART.test(text[i]) || text[i] === '`')) throw new ExprError(text, i, `unexpected ${JSON.stringify(text[i])} after the number ${m[0]}`);
      const value = Number(m[0]);
      if (!Number.isFinite(value)) throw new ExprError(text, start, `number ${m[0]} is out of range`);
      tokens.push({ type: 'number', value, pos: start });
      continue;
    }
    if (c === '"' || c === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= n) throw new ExprError(text, start, `unterminated string`, `no closing ${c}`);
        const d = text[i];
        if (d === c) break;
        if (d === '\\') {
          const e = text[i + 1];
          if (e === '\\' || e === '"' || e === "'") value += e;
          else if (e === 'n') value += '\n';
          else if (e === 't') value += '\t';
          else throw new ExprError(text, i, `unknown escape ${JSON.stringify(`\\${e ?? ''}`)}`, `use \\\\ \\" \\' \\n or \\t`);
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      i++;
      tokens.push({ type: 'string', value, pos: start });
      continue;
    }
    if (c === '`') {
      const close = text.indexOf('`', i + 1);
      if (close < 0) throw new ExprError(text, start, 'unterminated `name`', 'no closing backquote');
      const value = text.slice(i + 1, close);
      if (value.length === 0) throw new ExprError(text, start, 'empty `name`');
      i = close + 1;
      tokens.push({ type: 'name', value, pos: start });
      continue;
    }
    if (NAME_START.test(c)) {
      while (i < n && NAME_PART.test(text[i])) i++;
      const word = text.slice(start, i);
      tokens.push({ type: KEYWORDS.has(word) ? 'keyword' : 'name', value: word, pos: start });
      continue;
    }
    const two = text.slice(i, i + 2);
    if (TWO_CHAR_OPS.has(two)) {
      tokens.push({ type: 'op', value: two, pos: start });
      i += 2;
      continue;
    }
    if (ONE_CHAR_OPS.has(c)) {
      tokens.push({ type: 'op', value: c, pos: start });
      i++;
      continue;
    }
    if (two === '&&') throw new ExprError(text, i, `unexpected '&&'`, `write 'and'`);
    if (two === '||') throw new ExprError(text, i, `unexpected '||'`, `write 'or'`);
    if (c === '!') throw new ExprError(text, i, `unexpected '!'`, `write 'not', or '!=' to compare`);
    if (c === '=') throw new ExprError(text, i, `unexpected '='`, `write '==' to compare`);
    const shown = /[\u0000-\u001f\u007f]/.test(c) ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c;
    throw new ExprError(text, i, `unexpected character ${JSON.stringify(shown)}`);
  }
  tokens.push({ type: 'end', value: '', pos: n });
  return tokens;
}

// ---------------------------------------------------------------------------------------
// AST

export type Literal = number | string | boolean | null;
export type CompareOp = '<' | '<=' | '>' | '>=' | '==' | '!=';
export type ArithOp = '+' | '-' | '*' | '/';

/** Positions are 0-based offsets: the operator's for operators, the start for the rest. */
export type Node =
  | { kind: 'literal'; pos: number; value: Literal }
  | { kind: 'name'; pos: number; name: string }
  | { kind: 'negate'; pos: number; arg: Node }
  | { kind: 'not'; pos: number; arg: Node }
  | { kind: 'arith'; pos: number; op: ArithOp; left: Node; right: Node }
  | { kind: 'compare'; pos: number; op: CompareOp; left: Node; right: Node }
  | { kind: 'logic'; pos: number; op: 'and' | 'or'; left: Node; right: Node }
  | { kind: 'in'; pos: number; negated: boolean; arg: Node; values: Array<{ value: number | string | boolean; pos: number }> }
  | { kind: 'call'; pos: number; fn: FunctionName; args: Node[] };

type FunctionName = 'missing' | 'present' | 'abs' | 'min' | 'max' | 'coalesce';
const FUNCTIONS: Record<FunctionName, { min: number; max: number }> = {
  missing: { min: 1, max: 1 },
  present: { min: 1, max: 1 },
  abs: { min: 1, max: 1 },
  min: { min: 2, max: 16 },
  max: { min: 2, max: 16 },
  coalesce: { min: 2, max: 16 },
};
const isFunction = (name: string): name is FunctionName => Object.hasOwn(FUNCTIONS, name);

function describeToken(t: Token): string {
  switch (t.type) {
    case 'end':
      return 'end of input';
    case 'string':
      return `string ${JSON.stringify(t.value)}`;
    case 'number':
      return `number ${t.value}`;
    case 'name':
      return `name ${JSON.stringify(t.value)}`;
    default:
      return `'${t.value}'`;
  }
}

class Parser {
  private i = 0;
  private depth = 0;
  constructor(
    private readonly text: string,
    private readonly tokens: Token[],
    private readonly maxDepth: number,
  ) {}

  parse(): Node {
    const node = this.or();
    const t = this.peek();
    if (t.type !== 'end') {
      const hint = t.type === 'op' && t.value === ')' ? `this ')' closes nothing` : `expected an operator (and, or, <, ==, +, in, ...) or the end`;
      throw new ExprError(this.text, t.pos, `unexpected ${describeToken(t)}`, hint);
    }
    return node;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)];
  }
  private next(): Token {
    return this.tokens[this.i++];
  }
  private is(type: TokenType, value?: string): boolean {
    const t = this.peek();
    return t.type === type && (value === undefined || t.value === value);
  }
  private expect(value: string, opened?: Token): Token {
    const t = this.peek();
    if (t.type === 'op' && t.value === value) return this.next();
    const detail = `found ${describeToken(t)}${opened ? `; '${opened.value}' opened at column ${opened.pos + 1}` : ''}`;
    throw new ExprError(this.text, t.pos, `expected '${value}'`, detail);
  }
  private enter(pos: number): void {
    if (++this.depth > this.maxDepth) throw new ExprError(this.text, pos, `expression nests deeper than ${this.maxDepth} levels`);
  }

  private or(): Node {
    let left = this.and();
    while (this.is('keyword', 'or')) {
      const pos = this.next().pos;
      left = { kind: 'logic', op: 'or', pos, left, right: this.and() };
    }
    return left;
  }

  private and(): Node {
    let left = this.not();
    while (this.is('keyword', 'and')) {
      const pos = this.next().pos;
      left = { kind: 'logic', op: 'and', pos, left, right: this.not() };
    }
    return left;
  }

  private not(): Node {
    if (this.is('keyword', 'not')) {
      const pos = this.next().pos;
      this.enter(pos);
      const arg = this.not();
      this.depth--;
      return { kind: 'not', pos, arg };
    }
    return this.compare();
  }

  private compare(): Node {
    const left = this.sum();
    const t = this.peek();
    let node: Node;
    if (t.type === 'op' && (t.value === '<' || t.value === '<=' || t.value === '>' || t.value === '>=' || t.value === '==' || t.value === '!=')) {
      this.next();
      node = { kind: 'compare', op: t.value, pos: t.pos, left, right: this.sum() };
    } else if (t.type === 'keyword' && t.value === 'in') {
      this.next();
      node = { kind: 'in', negated: false, pos: t.pos, arg: left, values: this.list() };
    } else if (t.type === 'keyword' && t.value === 'not' && this.peek(1).type === 'keyword' && this.peek(1).value === 'in') {
      this.next();
      this.next();
      node = { kind: 'in', negated: true, pos: t.pos, arg: left, values: this.list() };
    } else return left;
    const after = this.peek();
    if ((after.type === 'op' && ['<', '<=', '>', '>=', '==', '!='].includes(after.value as string)) || (after.type === 'keyword' && after.value === 'in')) {
      throw new ExprError(this.text, after.pos, `comparisons do not chain`, `write 'a < b and b < c'`);
    }
    return node;
  }

  private list(): Array<{ value: number | string | boolean; pos: number }> {
    const open = this.peek();
    if (!(open.type === 'op' && open.value === '[')) throw new ExprError(this.text, open.pos, `expected '[' to start the list after 'in'`, `found ${describeToken(open)}`);
    this.next();
    const values: Array<{ value: number | string | boolean; pos: number }> = [];
    for (;;) {
      if (values.length > 0 && this.is('op', ']')) break; // trailing comma
      const t = this.next();
      if (t.type === 'number' || t.type === 'string') values.push({ value: t.value, pos: t.pos });
      else if (t.type === 'keyword' && (t.value === 'true' || t.value === 'false')) values.push({ value: t.value === 'true', pos: t.pos });
      else if (t.type === 'op' && t.value === '-' && this.peek().type === 'number') values.push({ value: -(this.next().value as number), pos: t.pos });
      else if (t.type === 'keyword' && t.value === 'null') throw new ExprError(this.text, t.pos, `null cannot be listed`, `a missing value is never in a list; use missing(x) or ...`);
      else throw new ExprError(this.text, t.pos, `expected a number, string, true or false in the list`, `found ${describeToken(t)}`);
      if (values.length > 1000) throw new ExprError(this.text, t.pos, `list has more than 1000 values`);
      if (this.is('op', ',')) {
        this.next();
        continue;
      }
      if (this.is('op', ']')) break;
      const bad = this.peek();
      throw new ExprError(this.text, bad.pos, `expected ',' or ']'`, `found ${describeToken(bad)}; '[' opened at column ${open.pos + 1}`);
    }
    this.next();
    return values;
  }

  private sum(): Node {
    let left = this.product();
    for (;;) {
      const t = this.peek();
      if (t.type !== 'op' || (t.value !== '+' && t.value !== '-')) return left;
      this.next();
      left = { kind: 'arith', op: t.value, pos: t.pos, left, right: this.product() };
    }
  }

  private product(): Node {
    let left = this.unary();
    for (;;) {
      const t = this.peek();
      if (t.type !== 'op' || (t.value !== '*' && t.value !== '/')) return left;
      this.next();
      left = { kind: 'arith', op: t.value, pos: t.pos, left, right: this.unary() };
    }
  }

  private unary(): Node {
    if (this.is('op', '-')) {
      const pos = this.next().pos;
      this.enter(pos);
      const arg = this.unary();
      this.depth--;
      // Fold the sign into number literals so `-1` is a literal.
      if (arg.kind === 'literal' && typeof arg.value === 'number') return { kind: 'literal', pos, value: -arg.value };
      return { kind: 'negate', pos, arg };
    }
    return this.primary();
  }

  private primary(): Node {
    const t = this.next();
    switch (t.type) {
      case 'number':
      case 'string':
        return { kind: 'literal', pos: t.pos, value: t.value };
      case 'keyword':
        if (t.value === 'true' || t.value === 'false') return { kind: 'literal', pos: t.pos, value: t.value === 'true' };
        if (t.value === 'null') return { kind: 'literal', pos: t.pos, value: null };
        break;
      case 'name': {
        const name = t.value as string;
        const quoted = this.text[t.pos] === '`';
        if (!quoted && this.is('op', '(')) return this.call(t, name);
        return { kind: 'name', pos: t.pos, name };
      }
      case 'op':
        if (t.value === '(') {
          this.enter(t.pos);
          const inner = this.or();
          this.expect(')', t);
          this.depth--;
          return inner;
        }
        break;
      case 'end':
        break;
    }
    throw new ExprError(this.text, t.pos, `expected a value (number, string, name, function or '(')`, `found ${describeToken(t)}`);
  }

  private call(t: Token, name: string): Node {
    if (!isFunction(name)) {
      throw new ExprError(this.text, t.pos, `unknown function ${JSON.stringify(name)}`, `functions are ${Object.keys(FUNCTIONS).join(', ')}`);
    }
    const open = this.next();
    this.enter(open.pos);
    const args: Node[] = [];
    if (!this.is('op', ')')) {
      for (;;) {
        args.push(this.or());
        if (!this.is('op', ',')) break;
        this.next();
      }
    }
    this.expect(')', open);
    this.depth--;
    const arity = FUNCTIONS[name];
    if (args.length < arity.min || args.length > arity.max) {
      const want = arity.min === arity.max ? `${arity.min}` : `${arity.min} to ${arity.max}`;
      throw new ExprError(this.text, t.pos, `${name}() takes ${want} argument${arity.max === 1 ? '' : 's'}, got ${args.length}`);
    }
    return { kind: 'call', pos: t.pos, fn: name, args };
  }
}

/** Parses an expression into its AST (no name or type checks). Throws ExprError. */
export function parseExpr(text: string, options: Pick<CompileOptions, 'maxLength' | 'maxDepth'> = {}): Node {
  const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH;
  if (typeof text !== 'string') throw new ExprError(String(text), 0, 'an expression must be a string');
  if (text.length > maxLength) throw new ExprError(text, maxLength, `expression is ${text.length} characters long; the limit is ${maxLength}`);
  if (text.trim() === '') throw new ExprError(text, 0, 'empty expression');
  return new Parser(text, tokenize(text), options.maxDepth ?? DEFAULT_MAX_DEPTH).parse();
}

// ---------------------------------------------------------------------------------------
// Static checks

/** What an expression is known to produce: `any` when it depends on an undeclared type. */
export type StaticType = 'number' | 'string' | 'boolean' | 'null' | 'any';

function staticOf(t: NameType | undefined): StaticType {
  if (t === undefined || t === 'any') return 'any';
  if (typeof t === 'object') return 'string';
  return t;
}

class Checker {
  readonly names: string[] = [];
  private readonly seen = new Set<string>();
  constructor(
    private readonly text: string,
    private readonly known: ReadonlySet<string> | null,
    private readonly types: ReadonlyMap<string, NameType>,
  ) {}

  private fail(pos: number, reason: string, detail?: string): never {
    throw new ExprError(this.text, pos, reason, detail);
  }

  private categoryOf(node: Node): { name: string; values: readonly string[] } | null {
    if (node.kind !== 'name') return null;
    const t = this.types.get(node.name);
    return typeof t === 'object' ? { name: node.name, values: t.category } : null;
  }

  private checkCategoryValue(node: Node, literal: Literal, pos: number): void {
    const category = this.categoryOf(node);
    if (!category || typeof literal !== 'string' || category.values.includes(literal)) return;
    const shown = category.values.length <= 12 ? category.values.join(', ') : `${category.values.slice(0, 12).join(', ')}, … (${category.values.length} in all)`;
    const close = closest(literal, category.values);
    this.fail(pos, `${JSON.stringify(literal)} is not a value of ${category.name}`, `${close ? `did you mean ${JSON.stringify(close)}? ` : ''}values: ${shown}`);
  }

  check(node: Node): StaticType {
    switch (node.kind) {
      case 'literal':
        return node.value === null ? 'null' : (typeof node.value as StaticType);
      case 'name': {
        if (this.known && !this.known.has(node.name)) {
          const close = closest(node.name, [...this.known]);
          this.fail(node.pos, `unknown name ${JSON.stringify(node.name)}`, close ? `did you mean ${JSON.stringify(close)}?` : undefined);
        }
        if (!this.seen.has(node.name)) {
          this.seen.add(node.name);
          this.names.push(node.name);
        }
        return staticOf(this.types.get(node.name));
      }
      case 'negate': {
        const t = this.check(node.arg);
        this.numeric(t, node.pos, `'-'`);
        return 'number';
      }
      case 'not': {
        const t = this.check(node.arg);
        this.boolean(t, node.pos, `'not'`);
        return 'boolean';
      }
      case 'arith': {
        const l = this.check(node.left);
        const r = this.check(node.right);
        this.numeric(l, node.pos, `'${node.op}'`);
        this.numeric(r, node.pos, `'${node.op}'`);
        return 'number';
      }
      case 'logic': {
        const l = this.check(node.left);
        const r = this.check(node.right);
        this.boolean(l, node.pos, `'${node.op}'`);
        this.boolean(r, node.pos, `'${node.op}'`);
        return 'boolean';
      }
      case 'compare': {
        const l = this.check(node.left);
        const r = this.check(node.right);
        if (l === 'null' || r === 'null') this.fail(node.pos, `cannot compare with null`, `a missing value is never equal to anything; use missing(x) or present(x)`);
        if (l !== 'any' && r !== 'any' && l !== r) this.fail(node.pos, `cannot compare ${l} with ${r}`, `the comparison would never be true`);
        const t = l !== 'any' ? l : r;
        if (t === 'boolean' && node.op !== '==' && node.op !== '!=') this.fail(node.pos, `booleans can only be compared with == and !=`);
        if (node.op === '==' || node.op === '!=') {
          if (node.right.kind === 'literal') this.checkCategoryValue(node.left, node.right.value, node.right.pos);
          if (node.left.kind === 'literal') this.checkCategoryValue(node.right, node.left.value, node.left.pos);
        }
        return 'boolean';
      }
      case 'in': {
        const t = this.check(node.arg);
        if (t === 'null') this.fail(node.pos, `null is never in a list`, `use missing(x)`);
        if (t !== 'any' && !node.values.some((v) => typeof v.value === t)) {
          this.fail(node.pos, `a ${t} is never in this list`, `the list holds ${[...new Set(node.values.map((v) => typeof v.value))].join(' and ')} values`);
        }
        for (const v of node.values) this.checkCategoryValue(node.arg, v.value, v.pos);
        return 'boolean';
      }
      case 'call': {
        const types = node.args.map((a) => this.check(a));
        switch (node.fn) {
          case 'missing':
          case 'present':
            return 'boolean';
          case 'abs':
          case 'min':
          case 'max':
            types.forEach((t, i) => this.numeric(t, node.args[i].pos, `${node.fn}()`));
            return 'number';
          case 'coalesce': {
            const known = [...new Set(types.filter((t) => t !== 'any' && t !== 'null'))];
            if (known.length > 1) this.fail(node.pos, `coalesce() mixes ${known.join(' and ')} arguments`);
            return types.includes('any') ? 'any' : (known[0] ?? 'null');
          }
        }
      }
    }
  }

  private numeric(t: StaticType, pos: number, what: string): void {
    if (t === 'null') this.fail(pos, `${what} cannot use null`, `arithmetic on a missing value is missing; use coalesce(x, 0)`);
    if (t !== 'number' && t !== 'any') this.fail(pos, `${what} needs numbers, got a ${t}`);
  }

  private boolean(t: StaticType, pos: number, what: string): void {
    if (t !== 'boolean' && t !== 'any') this.fail(pos, `${what} needs true/false conditions, got a ${t}`, t === 'number' ? `compare it, e.g. x > 0` : undefined);
  }
}

// ---------------------------------------------------------------------------------------
// Compilation to closures

type Fn = (row: Row, extra: unknown) => Value;

const hasOwn = Object.prototype.hasOwnProperty;

function normalize(v: unknown): Value {
  switch (typeof v) {
    case 'number':
      return v === v ? v : undefined; // NaN is missing
    case 'string':
    case 'boolean':
      return v;
    default:
      return undefined; // undefined, null, objects, arrays, functions
  }
}

function reader(name: string, accessors: ReadonlyMap<string, Accessor>): Fn {
  const accessor = accessors.get(name);
  if (accessor) return (row, extra) => normalize(accessor(row, extra));
  return (row) => (hasOwn.call(row, name) ? normalize(row[name]) : undefined);
}

const finite = (x: number): Value => (x - x === 0 ? x : undefined); // NaN and ±Infinity are missing

function compileArith(op: ArithOp, l: Fn, r: Fn): Fn {
  switch (op) {
    case '+':
      return (row, extra) => {
        const a = l(row, extra);
        if (typeof a !== 'number') return undefined;
        const b = r(row, extra);
        return typeof b === 'number' ? finite(a + b) : undefined;
      };
    case '-':
      return (row, extra) => {
        const a = l(row, extra);
        if (typeof a !== 'number') return undefined;
        const b = r(row, extra);
        return typeof b === 'number' ? finite(a - b) : undefined;
      };
    case '*':
      return (row, extra) => {
        const a = l(row, extra);
        if (typeof a !== 'number') return undefined;
        const b = r(row, extra);
        return typeof b === 'number' ? finite(a * b) : undefined;
      };
    case '/':
      return (row, extra) => {
        const a = l(row, extra);
        if (typeof a !== 'number') return undefined;
        const b = r(row, extra);
        return typeof b === 'number' && b !== 0 ? finite(a / b) : undefined;
      };
  }
}

/** `name op number-literal`, the most common condition, without the generic dispatch. */
function compileCompareConst(op: CompareOp, l: Fn, c: number | string | boolean): Fn {
  const t = typeof c;
  switch (op) {
    case '<':
      return t === 'boolean' ? () => undefined : (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? (a as number) < (c as number) : undefined;
      };
    case '<=':
      return t === 'boolean' ? () => undefined : (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? (a as number) <= (c as number) : undefined;
      };
    case '>':
      return t === 'boolean' ? () => undefined : (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? (a as number) > (c as number) : undefined;
      };
    case '>=':
      return t === 'boolean' ? () => undefined : (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? (a as number) >= (c as number) : undefined;
      };
    case '==':
      return (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? a === c : undefined;
      };
    case '!=':
      return (row, extra) => {
        const a = l(row, extra);
        return typeof a === t ? a !== c : undefined;
      };
  }
}

function compileCompare(op: CompareOp, l: Fn, r: Fn): Fn {
  // Same type on both sides, and not missing; booleans only for == and !=.
  const ordered = op !== '==' && op !== '!=';
  const pair = (a: Value, b: Value): boolean => a !== undefined && typeof a === typeof b && !(ordered && typeof a === 'boolean');
  switch (op) {
    case '<':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? (a as number) < (b as number) : undefined;
      };
    case '<=':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? (a as number) <= (b as number) : undefined;
      };
    case '>':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? (a as number) > (b as number) : undefined;
      };
    case '>=':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? (a as number) >= (b as number) : undefined;
      };
    case '==':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? a === b : undefined;
      };
    case '!=':
      return (row, extra) => {
        const a = l(row, extra);
        const b = r(row, extra);
        return pair(a, b) ? a !== b : undefined;
      };
  }
}

function compileNode(node: Node, accessors: ReadonlyMap<string, Accessor>): Fn {
  const compile = (n: Node) => compileNode(n, accessors);
  switch (node.kind) {
    case 'literal': {
      const v = node.value === null ? undefined : node.value;
      return () => v;
    }
    case 'name':
      return reader(node.name, accessors);
    case 'negate': {
      const arg = compile(node.arg);
      return (row, extra) => {
        const a = arg(row, extra);
        return typeof a === 'number' ? -a : undefined;
      };
    }
    case 'not': {
      const arg = compile(node.arg);
      return (row, extra) => {
        const a = arg(row, extra);
        return a === true ? false : a === false ? true : undefined;
      };
    }
    case 'arith':
      return compileArith(node.op, compile(node.left), compile(node.right));
    case 'compare': {
      const { left, right, op } = node;
      if (right.kind === 'literal' && right.value !== null) return compileCompareConst(op, compile(left), right.value);
      if (left.kind === 'literal' && left.value !== null) {
        const flipped: Record<CompareOp, CompareOp> = { '<': '>', '<=': '>=', '>': '<', '>=': '<=', '==': '==', '!=': '!=' };
        return compileCompareConst(flipped[op], compile(right), left.value);
      }
      return compileCompare(op, compile(left), compile(right));
    }
    case 'logic': {
      const l = compile(node.left);
      const r = compile(node.right);
      if (node.op === 'and') {
        return (row, extra) => {
          const a = l(row, extra);
          if (a === false) return false;
          const b = r(row, extra);
          if (b === false) return false;
          return a === true && b === true ? true : undefined;
        };
      }
      return (row, extra) => {
        const a = l(row, extra);
        if (a === true) return true;
        const b = r(row, extra);
        if (b === true) return true;
        return a === false && b === false ? false : undefined;
      };
    }
    case 'in': {
      const arg = compile(node.arg);
      const set = new Set<Value>(node.values.map((v) => v.value));
      const types = new Set<string>(node.values.map((v) => typeof v.value));
      const negated = node.negated;
      return (row, extra) => {
        const a = arg(row, extra);
        if (a === undefined || !types.has(typeof a)) return undefined;
        return set.has(a) !== negated;
      };
    }
    case 'call': {
      const args = node.args.map(compile);
      switch (node.fn) {
        case 'missing': {
          const a = args[0];
          return (row, extra) => a(row, extra) === undefined;
        }
        case 'present': {
          const a = args[0];
          return (row, extra) => a(row, extra) !== undefined;
        }
        case 'abs': {
          const a = args[0];
          return (row, extra) => {
            const v = a(row, extra);
            return typeof v === 'number' ? Math.abs(v) : undefined;
          };
        }
        case 'min':
        case 'max': {
          const pick = node.fn === 'min' ? Math.min : Math.max;
          return (row, extra) => {
            let best: number | undefined;
            for (const a of args) {
              const v = a(row, extra);
              if (typeof v !== 'number') return undefined;
              best = best === undefined ? v : pick(best, v);
            }
            return best;
          };
        }
        case 'coalesce':
          return (row, extra) => {
            for (const a of args) {
              const v = a(row, extra);
              if (v !== undefined) return v;
            }
            return undefined;
          };
      }
    }
  }
}

function typeMap(types: CompileOptions['types']): ReadonlyMap<string, NameType> {
  if (!types) return new Map();
  if (types instanceof Map) return types;
  return new Map(Object.entries(types as Record<string, NameType>));
}

/**
 * Parses, checks and compiles an expression. Throws ExprError naming the column and what
 * was expected, for syntax errors, unknown names, type errors and hostile sizes.
 */
export function compileExpr(text: string, options: CompileOptions = {}): CompiledExpr {
  const ast = parseExpr(text, options);
  const accessors = options.accessors ?? new Map<string, Accessor>();
  const known = options.knownNames === undefined ? null : new Set([...options.knownNames, ...accessors.keys()]);
  const checker = new Checker(text, known, typeMap(options.types));
  const type = checker.check(ast);
  if ((options.result ?? 'boolean') === 'boolean' && type !== 'boolean' && type !== 'any') {
    throw new ExprError(text, 0, `a condition must be true or false, but this expression is a ${type}`, type === 'number' ? 'compare it, e.g. x > 0' : undefined);
  }
  const fn = compileNode(ast, accessors);
  return {
    text,
    names: checker.names,
    type,
    evaluate: (row, extra) => fn(row, extra),
    test: (row, extra) => fn(row, extra) === true,
  };
}
