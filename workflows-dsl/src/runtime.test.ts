// The runtime entry point is what Temporal workflow code imports: it must stay free of ajv, yaml,
// Node modules, clocks, randomness and code generation (webpack bundles it; replays re-run it).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as index from './index.ts';
import * as runtime from './runtime.ts';

const src = new URL('./', import.meta.url);

/** Files reachable from `entry` through relative imports (type-only imports included: harmless). */
function importGraph(entry: string): Map<string, string> {
  const files = new Map<string, string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    const text = readFileSync(new URL(file, src), 'utf8');
    files.set(file, text);
    for (const match of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
      const target = match[1]!;
      if (target.startsWith('.')) visit(new URL(target, new URL(file, src)).pathname.slice(src.pathname.length));
      else files.set(`package:${target}`, '');
    }
  };
  visit(entry);
  return files;
}

describe('runtime entry point', () => {
  const graph = importGraph('runtime.ts');

  it('imports no package and no Node module', () => {
    expect(graph.size).toBeGreaterThanOrEqual(12);
    expect(graph.has('expression/parser.ts') && graph.has('compile.ts') && graph.has('semantics.ts')).toBe(true);
    expect([...graph.keys()].filter((f) => f.startsWith('package:'))).toEqual([]);
  });

  it('does not reach the parsing, validation or schema modules', () => {
    for (const file of ['parse.ts', 'validate.ts', 'json-schema.ts', 'schema.ts', 'index.ts']) expect(graph.has(file)).toBe(false);
  });

  it('uses no clock, randomness, eval or code generation', () => {
    for (const [file, text] of graph) {
      const code = text.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
      expect({ file, match: /\b(Date|Math\.random|performance|crypto|eval|Function|setTimeout|setInterval|process|require)\b/.exec(code)?.[0] }).toEqual({ file, match: undefined });
    }
  });

  it('index re-exports the whole runtime API', () => {
    for (const name of Object.keys(runtime)) expect(index).toHaveProperty(name);
  });

  it('index exposes the public API', () => {
    for (const name of ['parseWorkflow', 'validateWorkflow', 'compileWorkflow', 'evaluate', 'renderTemplate', 'extractReferences', 'WORKFLOW_SCHEMA', 'nextSteps', 'validateInputs', 'compileJsonSchema']) {
      expect(index).toHaveProperty(name);
    }
  });
});
