// The malformed corpus: every document must fail with exactly the expected errors (code and
// pointer, and line/column where the sidecar gives them) — no crash, no noise. And the valid
// corpus and the examples must parse with zero errors.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileWorkflow, parseWorkflow } from './index.ts';

const corpus = new URL('../test-corpus/', import.meta.url);
const malformedDir = new URL('malformed/', corpus);
const validDir = new URL('valid/', corpus);
const examplesDir = new URL('../../examples/', import.meta.url);

interface Expected {
  description: string;
  errors: { code: string; pointer: string; line?: number; column?: number }[];
}
const expected = JSON.parse(readFileSync(new URL('expected.json', malformedDir), 'utf8')) as Record<string, Expected>;
const files = readdirSync(malformedDir)
  .filter((f) => f !== 'expected.json')
  .sort();

describe('malformed corpus', () => {
  it('has at least 100 documents, each with its expectation', () => {
    expect(files.length).toBeGreaterThanOrEqual(100);
    expect(Object.keys(expected).sort()).toEqual(files);
    expect(files.filter((f) => f.endsWith('.json')).length).toBeGreaterThanOrEqual(10);
  });

  it.each(files)('%s', (file) => {
    const source = readFileSync(new URL(file, malformedDir), 'utf8');
    const { errors: wanted } = expected[file]!;
    const result = parseWorkflow(source, file.endsWith('.json') ? 'json' : 'yaml');
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const key = (e: { code: string; pointer: string }) => `${e.code} ${e.pointer}`;
    expect(result.errors.map(key).sort()).toEqual(wanted.map(key).sort());
    for (const error of result.errors) {
      expect(error.message.length).toBeGreaterThan(10);
    }
    for (const want of wanted.filter((w) => w.line !== undefined)) {
      const got = result.errors.find((e) => key(e) === key(want))!;
      expect({ line: got.line, column: got.column }).toEqual({ line: want.line, column: want.column });
    }
    // The same text read as 'auto' gives the same errors.
    const auto = parseWorkflow(source);
    expect(auto.ok ? [] : auto.errors.map(key).sort()).toEqual(wanted.map(key).sort());
  });
});

describe('valid corpus and examples', () => {
  const valid = readdirSync(validDir).sort().map((f) => new URL(f, validDir));
  const examples = readdirSync(examplesDir)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .sort()
    .map((f) => new URL(f, examplesDir));

  it('has the required examples', () => {
    const names = examples.map((u) => u.pathname.split('/').pop());
    expect(names).toEqual(expect.arrayContaining(['literature-review.yaml', 'data-extraction.yaml', 'approval.yaml']));
  });

  it.each([...valid, ...examples].map((u) => [u.pathname.split('/').slice(-2).join('/'), u] as const))('%s parses with zero errors and compiles', (_, url) => {
    const result = parseWorkflow(readFileSync(url, 'utf8'));
    if (!result.ok) expect(result.errors).toEqual([]);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.warnings).toEqual([]);
    const plan = compileWorkflow(result.document);
    expect(plan.stepIds.length).toBeGreaterThan(0);
  });
});
