import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { compileJsonSchema, STEP_KINDS, validateInputs, validateWorkflow, WORKFLOW_SCHEMA, WORKFLOW_SCHEMA_ID } from './index.ts';

const published = new URL('../schema/workflow.schema.json', import.meta.url);

describe('WORKFLOW_SCHEMA', () => {
  it('is published unchanged as schema/workflow.schema.json (run scripts/write-schema.ts after editing schema.ts)', () => {
    expect(JSON.parse(readFileSync(published, 'utf8'))).toEqual(WORKFLOW_SCHEMA);
  });

  it('is a valid JSON Schema 2020-12 and compiles in ajv strict mode', () => {
    const ajv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true });
    ajv.addKeyword({ keyword: 'x-error-message', schemaType: 'string' });
    expect(ajv.validateSchema(WORKFLOW_SCHEMA)).toBe(true);
    expect(() => ajv.compile(WORKFLOW_SCHEMA)).not.toThrow();
    expect(WORKFLOW_SCHEMA.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(WORKFLOW_SCHEMA.$id).toBe(WORKFLOW_SCHEMA_ID);
  });

  it('describes every step kind, each closed to unknown properties', () => {
    const defs = WORKFLOW_SCHEMA.$defs as Record<string, { additionalProperties?: unknown; description?: string }>;
    for (const kind of STEP_KINDS) {
      expect(defs[`${kind}Step`]?.additionalProperties).toBe(false);
      expect(defs[`${kind}Step`]?.description).toBeTruthy();
    }
    const dispatcher = WORKFLOW_SCHEMA.$defs.step as unknown as { properties: { kind: { enum: string[] } } };
    expect(dispatcher.properties.kind.enum).toEqual([...STEP_KINDS]);
  });

  it('has no way to lift the SSRF guard from a workflow', () => {
    expect(JSON.stringify(WORKFLOW_SCHEMA)).not.toContain('"allow_private"');
    const result = validateWorkflow({ name: 'x', steps: [{ id: 'a', kind: 'http', url: 'http://10.0.0.1', allow_private: true }] });
    expect(result.ok).toBe(false);
  });

  it('loop iterations are capped at 100 by the schema', () => {
    const defs = WORKFLOW_SCHEMA.$defs as unknown as Record<string, { properties: Record<string, { maximum?: number }> }>;
    expect(defs.loopStep!.properties.max_iterations!.maximum).toBe(100);
  });
});

describe('validateWorkflow', () => {
  it('accepts a document value and returns it', () => {
    const doc = { name: 'x', steps: [{ id: 'a', kind: 'template', template: '${{ 1 + 1 }}' }] };
    const result = validateWorkflow(doc);
    expect(result).toEqual({ ok: true, document: doc, warnings: [] });
  });

  it('returns errors with pointers and no positions', () => {
    const result = validateWorkflow({ name: 'x', steps: [{ id: 'a', kind: 'template' }] });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toEqual([{ code: 'schema', message: 'template step "a" is missing the required property "template"', pointer: '/steps/0' }]);
  });

  it('never throws, whatever the value', () => {
    for (const value of [undefined, null, 0, 'x', [], {}, { steps: 'x' }, { name: 'x', steps: [null, 1, 'a', []] }, { name: 'x', steps: [{ id: 'a', kind: 'map', over: 1, steps: {} }] }]) {
      expect(validateWorkflow(value).ok).toBe(false);
    }
  });

  it('warns about unknown keywords in embedded schemas (likely typos)', () => {
    const result = validateWorkflow({ name: 'x', steps: [{ id: 'a', kind: 'llm', prompt: 'p', output_schema: { type: 'object', propertis: { a: {} } } }] });
    expect(result.ok).toBe(true);
    expect(result.warnings).toEqual([{ code: 'schema_warning', message: 'output_schema: unknown keyword "propertis" is ignored', pointer: '/steps/0/output_schema/propertis' }]);
  });

  it('checks embedded schemas without keeping them: the same $id can be used again', () => {
    const step = (n: number) => ({ id: `s${n}`, kind: 'llm', prompt: 'p', output_schema: { $id: 'https://example.org/x', type: 'object' } });
    expect(validateWorkflow({ name: 'x', steps: [step(1)] }).ok).toBe(true);
    expect(validateWorkflow({ name: 'x', steps: [step(1)] }).ok).toBe(true);
  });
});

describe('run inputs and model outputs against embedded schemas', () => {
  const inputs = {
    type: 'object',
    properties: { topic: { type: 'string', minLength: 3 }, depth: { type: 'integer', default: 2 } },
    required: ['topic'],
    additionalProperties: false,
  };

  it('validateInputs fills defaults in a copy', () => {
    const given = { topic: 'mars' };
    expect(validateInputs(inputs, given)).toEqual({ ok: true, inputs: { topic: 'mars', depth: 2 } });
    expect(given).toEqual({ topic: 'mars' });
  });

  it('validateInputs reports every problem with a pointer', () => {
    const result = validateInputs(inputs, { topic: 'x', extra: 1 });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors.map((e) => e.pointer).sort()).toEqual(['/extra', '/topic']);
  });

  it('a workflow without inputs takes none', () => {
    expect(validateInputs(undefined, {})).toEqual({ ok: true, inputs: {} });
    expect(validateInputs(undefined, { a: 1 }).ok).toBe(false);
  });

  it('compileJsonSchema validates model replies (for the repair prompt)', () => {
    const compiled = compileJsonSchema({ type: 'object', properties: { ok: { type: 'boolean' }, issues: { type: 'array', items: { type: 'string' } } }, required: ['ok', 'issues'] });
    expect(compiled.ok).toBe(true);
    if (!compiled.ok) return;
    expect(compiled.schema.validate({ ok: true, issues: [] })).toEqual({ ok: true });
    const bad = compiled.schema.validate({ ok: 'yes', issues: [1] });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.errors.map((e) => e.message)).toEqual(['/ok must be boolean', '/issues/0 must be string']);
  });

  it('compileJsonSchema refuses an invalid schema', () => {
    expect(compileJsonSchema({ type: 'nope' }).ok).toBe(false);
    expect(compileJsonSchema({ $ref: 'https://example.org/remote.json' }).ok).toBe(false);
  });
});
