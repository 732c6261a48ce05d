/**
 * The encoding is the one place input fields become model columns. Each rule is named in
 * its error, missing values become NaN, and text (CSV) and typed JSON are read the same way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildEncoding, type FieldError, type RawRow } from '../src/bundle/encoding.ts';
import { featureSchema, type FeatureSpec } from '../src/bundle/manifest.ts';

const features: FeatureSpec[] = [
  { name: 'income', type: 'number', min: 0 },
  { name: 'age', type: 'integer', min: 18, max: 120, nullable: true },
  { name: 'owner', type: 'boolean', default: false },
  { name: 'term', type: 'category', values: ['36', '60'], encoding: 'ordinal' },
  { name: 'state', type: 'category', values: ['CA', 'NY', 'TX'], encoding: 'onehot', nullable: true },
  { name: 'grade', type: 'category', values: ['A', 'B'], encoding: 'ordinal', on_unknown: 'missing', default: 'B' },
].map((f) => featureSchema.parse(f));

const encoding = buildEncoding(features);

function encode(row: RawRow, fromText = false): { columns: number[]; errors: FieldError[] } {
  const out = new Float32Array(encoding.width);
  const errors: FieldError[] = [];
  encoding.encoder({ fromText })(row, out, 0, errors);
  return { columns: [...out], errors };
}

const valid = { income: 52000.5, age: 40, owner: true, term: '60', state: 'NY', grade: 'A' };

describe('encoding', () => {
  it('lays out one column per feature and one per value for one-hot categories', () => {
    assert.deepEqual(encoding.columns, ['income', 'age', 'owner', 'term', 'state=CA', 'state=NY', 'state=TX', 'grade']);
    assert.deepEqual(encode(valid), { columns: [52000.5, 40, 1, 1, 0, 1, 0, 0], errors: [] });
  });

  it('rounds numbers to float32 as the model sees them', () => {
    assert.equal(encode({ ...valid, income: 0.1 }).columns[0], Math.fround(0.1));
  });

  it('names the field and the rule of every problem in a row, all at once', () => {
    const { errors } = encode({ income: -1, age: 17.5, owner: 'yes', term: '48', state: 7, grade: 'Z' });
    assert.deepEqual(
      errors.map((e) => [e.field, e.rule]),
      [
        ['income', 'min'],
        ['age', 'integer'],
        ['owner', 'type'],
        ['term', 'category'],
        ['state', 'category'],
      ],
    );
    assert.match(errors[3].message, /term must be one of 36, 60; got "48"/);
  });

  it('rejects a missing required field and fills missing optional ones', () => {
    assert.deepEqual(encode({ ...valid, income: undefined }).errors.map((e) => e.rule), ['required']);
    const { columns, errors } = encode({ income: 1, term: '36' });
    assert.deepEqual(errors, []);
    // age nullable → NaN; owner default false → 0; state missing → all zeros; grade default B → 1.
    assert.ok(Number.isNaN(columns[1]));
    assert.deepEqual([columns[2], columns[4], columns[5], columns[6], columns[7]], [0, 0, 0, 0, 1]);
  });

  it('scores an unseen category as missing when the feature says so', () => {
    const { columns, errors } = encode({ ...valid, grade: 'Z' });
    assert.deepEqual(errors, []);
    assert.ok(Number.isNaN(columns[7]));
  });

  it('reads CSV text: numbers, booleans, empty cells as missing, and rejects junk', () => {
    const text = { income: ' 52000.5 ', age: '', owner: 'TRUE', term: '60', state: 'NY', grade: 'A' };
    const { columns, errors } = encode(text, true);
    assert.deepEqual(errors, []);
    assert.equal(columns[0], 52000.5);
    assert.ok(Number.isNaN(columns[1]));
    assert.equal(columns[2], 1);
    for (const junk of ['12abc', '0x10', 'NaN', 'Infinity', '1e999']) {
      assert.deepEqual(encode({ ...text, income: junk }, true).errors.map((e) => e.field), ['income'], junk);
    }
  });

  it('does not accept numeric text from typed JSON callers', () => {
    assert.deepEqual(encode({ ...valid, income: '52000' }).errors.map((e) => [e.field, e.rule]), [['income', 'type']]);
  });

  it('never reads inherited properties as feature values', () => {
    const row = JSON.parse('{"__proto__": {"income": 5}, "term": "36"}') as RawRow;
    assert.deepEqual(encode(row).errors.map((e) => [e.field, e.rule]), [['income', 'required']]);
  });
});
