import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseWorkflow, type DslError, type ValidationResult } from './index.ts';

const YAML_DOC = `name: summarize
inputs:
  type: object
  properties:
    text: { type: string }
steps:
  - id: clean
    kind: transform
    value: \${{ trim(inputs.text) }}
  - id: summarize
    kind: llm
    prompt: "Summarize: \${{ steps.clean.output }}"
outputs:
  summary: \${{ steps.summarize.output }}
`;

const JSON_DOC = JSON.stringify(
  {
    name: 'summarize',
    steps: [
      { id: 'clean', kind: 'transform', value: 'x' },
      { id: 'summarize', kind: 'llm', prompt: 'Summarize: ${{ steps.clean.output }}' },
    ],
  },
  null,
  2,
);

function errorsOf(result: ValidationResult): DslError[] {
  expect(result.ok).toBe(false);
  return result.ok ? [] : result.errors;
}

describe('parseWorkflow: reading', () => {
  it('reads YAML into a document', () => {
    const result = parseWorkflow(YAML_DOC);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.document.name).toBe('summarize');
    expect(result.document.steps.map((s) => s.kind)).toEqual(['transform', 'llm']);
    expect(result.warnings).toEqual([]);
  });

  it('reads JSON into the same shape', () => {
    for (const format of ['json', 'auto'] as const) {
      const result = parseWorkflow(JSON_DOC, format);
      expect(result.ok).toBe(true);
      if (result.ok) expect(result.document.steps[1]).toEqual({ id: 'summarize', kind: 'llm', prompt: 'Summarize: ${{ steps.clean.output }}' });
    }
  });

  it('reads JSON as YAML when asked (JSON is YAML flow syntax)', () => {
    expect(parseWorkflow(JSON_DOC, 'yaml').ok).toBe(true);
  });

  it('a YAML text read as JSON is a json_syntax error at line 1', () => {
    const [error] = errorsOf(parseWorkflow(YAML_DOC, 'json'));
    expect(error).toMatchObject({ code: 'json_syntax', pointer: '', line: 1, column: 1 });
  });

  it('accepts a byte-order mark', () => {
    expect(parseWorkflow(`\uFEFF${YAML_DOC}`).ok).toBe(true);
    expect(parseWorkflow(`\uFEFF${JSON_DOC}`).ok).toBe(true);
  });

  it('keeps YAML core types: yes/on stay strings, no date conversion', () => {
    const result = parseWorkflow(`name: on\nsteps:\n  - id: a\n    kind: template\n    template: 2024-01-01\n`);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.document.name).toBe('on');
      expect((result.document.steps[0] as { template: unknown }).template).toBe('2024-01-01');
    }
  });

  it('expands aliases within limits', () => {
    const result = parseWorkflow(`name: aliases
steps:
  - id: a
    kind: llm
    prompt: hi
    output_schema: &s { type: object, properties: { ok: { type: boolean } } }
  - id: b
    kind: llm
    prompt: again
    output_schema: *s
`);
    expect(result.ok).toBe(true);
  });

  it('reports unknown tags as warnings with a position', () => {
    const result = parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: template\n    template: !custom hello\n`);
    expect(result.ok).toBe(true);
    expect(result.warnings).toEqual([expect.objectContaining({ code: 'yaml_warning', pointer: '/steps/0/template', line: 5, column: 15 })]);
  });
});

describe('parseWorkflow: never throws, returns every error', () => {
  it.each<[string, unknown]>([
    ['a number', 42],
    ['null', null],
    ['an object', { name: 'x' }],
    ['undefined', undefined],
  ])('a non-string source (%s) is an error, not an exception', (_, source) => {
    expect(errorsOf(parseWorkflow(source as string))[0]!.code).toBe('schema');
  });

  it('refuses sources over the size limit', () => {
    expect(errorsOf(parseWorkflow('#'.repeat(1_000_001)))[0]!.code).toBe('limit_exceeded');
  });

  it('returns errors of every stage together', () => {
    const errors = errorsOf(
      parseWorkflow(`name: many
inputs: { type: object, properties: { q: { type: string } } }
steps:
  - id: a
    kind: llm
    prompt: \${{ inputs.qq }}
    temperature: 5
  - id: b
    kind: template
    template: x
    needs: [c]
  - id: c
    kind: template
    template: \${{ nope(1) }}
    needs: [b]
`),
    );
    expect(errors.map((e) => `${e.code} ${e.pointer}`)).toEqual([
      'unknown_input /steps/0/prompt',
      'schema /steps/0/temperature',
      'unknown_function /steps/2/template',
      'cycle /steps/2/needs/0',
    ]);
  });

  it('errors are sorted by position and all have a line and column', () => {
    const errors = errorsOf(parseWorkflow(`name: x\nsteps:\n  - id: b\n    kind: nope\n  - id: a\n    kind: template\n    template: \${{ steps.zz.output }}\n`));
    expect(errors.every((e) => typeof e.line === 'number' && typeof e.column === 'number')).toBe(true);
    expect(errors.map((e) => e.line)).toEqual([...errors.map((e) => e.line!)].sort((x, y) => x - y));
  });

  it('random text never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        const result = parseWorkflow(text);
        if (!result.ok) for (const e of result.errors) expect(typeof e.code).toBe('string');
      }),
      { numRuns: 400 },
    );
  });

  it('random edits of a valid document never throw, and errors point into it', () => {
    const pieces = ['\n', ' ', '  ', ':', '- ', '[', ']', '{', '}', '"', "'", '${{', '}}', 'steps', 'needs: [a]', 'kind: map', '#', '&a', '*a', '\t', ',', 'id: a'];
    fc.assert(
      fc.property(fc.nat(YAML_DOC.length), fc.nat(20), fc.constantFrom(...pieces), (at, cut, piece) => {
        const text = YAML_DOC.slice(0, at) + piece + YAML_DOC.slice(Math.min(YAML_DOC.length, at + cut));
        const result = parseWorkflow(text);
        if (result.ok) return;
        for (const e of result.errors) {
          expect(e.pointer === '' || e.pointer.startsWith('/')).toBe(true);
          if (e.line !== undefined) expect(e.line).toBeLessThanOrEqual(text.split('\n').length + 1);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('random JSON values never throw', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        parseWorkflow(JSON.stringify(value), 'json');
        parseWorkflow(JSON.stringify({ name: 'x', steps: [value] }), 'json');
        parseWorkflow(JSON.stringify({ name: 'x', steps: [{ id: 'a', kind: 'map', over: '${{ [1] }}', steps: [value] }] }), 'json');
      }),
      { numRuns: 400 },
    );
  });
});

describe('parseWorkflow: positions', () => {
  it('schema errors after parsing map back to line and column', () => {
    const [error] = errorsOf(parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: retrieve\n    knowledge_base: kb\n    query: q\n    top_k: 0\n`));
    expect(error).toMatchObject({ code: 'schema', pointer: '/steps/0/top_k', line: 7, column: 12, endLine: 7, endColumn: 13 });
  });

  it('unknown properties point at the key', () => {
    const [error] = errorsOf(parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: template\n    template: t\n    tempalte: u\n`));
    expect(error).toMatchObject({ pointer: '/steps/0/tempalte', line: 6, column: 5 });
    expect(error!.message).toContain('did you mean "template"');
  });

  it('missing properties point at the object', () => {
    const [error] = errorsOf(parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: template\n`));
    expect(error).toMatchObject({ pointer: '/steps/0', line: 3, column: 5 });
  });

  it('expression errors point at the offending character, in every scalar style', () => {
    // The error is about `steps.zz`: its line and column must be where that text is in the source.
    const check = (value: string, exact = true) => {
      const source = `name: x\nsteps:\n  - id: a\n    kind: template\n    template: ${value}\n`;
      const [error] = errorsOf(parseWorkflow(source));
      expect(error).toMatchObject({ code: 'unknown_step', pointer: '/steps/0/template' });
      const lines = source.split('\n');
      const line = lines.findIndex((l) => l.includes('steps.zz'));
      if (exact) expect({ line: error!.line, column: error!.column }).toEqual({ line: line + 1, column: lines[line]!.indexOf('steps.zz') + 1 });
      else expect({ line: error!.line, column: error!.column }).toEqual({ line: 5, column: 15 });
    };
    check('hi ${{ steps.zz.output }}');
    check('"hi ${{ steps.zz.output }}"');
    check("'it''s ${{ steps.zz.output }}'");
    check('"tab\\there ${{ steps.zz.output }}"');
    check('"\\u00e9 \\x41 ${{ steps.zz.output }}"');
    check('|\n      first line\n        indented\n      then ${{ steps.zz.output }}');
    check('|-\n      first line\n\n      then ${{ steps.zz.output }}');
    // A folded scalar cannot be mapped exactly: the error points at the scalar.
    check('>\n      first line\n      then ${{ steps.zz.output }}', false);
  });

  it('expression errors in JSON strings with escapes point at the character', () => {
    const source = '{"name": "x", "steps": [{"id": "a", "kind": "template",\n "template": "line\\nnext \\"q\\" ${{ steps.zz.output }}"}]}';
    const [error] = errorsOf(parseWorkflow(source));
    expect(error).toMatchObject({ code: 'unknown_step', line: 2, column: 36 });
    expect(source.split('\n')[1]!.slice(35, 40)).toBe('steps');
  });

  it('JSON syntax errors have a position', () => {
    const [error] = errorsOf(parseWorkflow('{\n  "name": "x",\n  "steps": [1 2]\n}'));
    expect(error).toMatchObject({ code: 'json_syntax', line: 3, column: 15 });
    expect(error!.message).toContain('expected "," or "]"');
  });

  it('YAML syntax errors keep only the first of a cascade, with a hint for unquoted expressions', () => {
    const errors = errorsOf(
      parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: transform\n    value: \${{ x ? 1 : 2 }}\n  - id: b\n    kind: template\n    template: y\n`),
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'yaml_syntax', pointer: '/steps/0/value', line: 5, column: 12 });
    expect(errors[0]!.message).toContain('put the ${{ … }} expression in quotes');
  });

  it('every duplicate key is reported with its key', () => {
    const errors = errorsOf(parseWorkflow(`name: x\nsteps:\n  - id: a\n    kind: template\n    kind: llm\n    template: t\n    template: u\n`));
    expect(errors.map((e) => [e.code, e.pointer, e.line])).toEqual([
      ['duplicate_key', '/steps/0/kind', 5],
      ['duplicate_key', '/steps/0/template', 7],
    ]);
    expect(errors[0]!.message).toBe('duplicate key "kind": keys of a mapping must be unique');
  });
});
