import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  evaluate,
  ExpressionError,
  extractReferences,
  FUNCTION_NAMES,
  inferType,
  isExpression,
  parseExpression,
  parseTemplate,
  renderTemplate,
  type Scope,
} from './index.ts';

const scope: Scope = {
  inputs: { topic: 'Mars', count: 3, tags: ['a', 'b', 'c'], nested: { deep: { value: 42 } }, empty: '', none: null },
  steps: {
    plan: { output: { items: ['q1', 'q2'], ok: true }, status: 'succeeded', error: null },
    failed: { output: null, status: 'failed', error: { message: 'boom' } },
  },
  vars: { n: 2 },
  item: 'x',
};

const run = (expression: string, s: Scope = scope) => evaluate(expression, s);

function failure(expression: string, s: Scope = scope): ExpressionError {
  try {
    evaluate(expression, s);
  } catch (error) {
    expect(error).toBeInstanceOf(ExpressionError);
    return error as ExpressionError;
  }
  throw new Error(`expected ${expression} to fail`);
}

describe('literals', () => {
  it.each([
    ['42', 42],
    ['3.25', 3.25],
    ['1e3', 1000],
    ['2.5E-1', 0.25],
    ["'single'", 'single'],
    ['"double"', 'double'],
    ["'it\\'s'", "it's"],
    ['"a\\nb\\t\\u0041"', 'a\nb\tA'],
    ['true', true],
    ['false', false],
    ['null', null],
    ['[]', []],
    ['[1, "two", [3]]', [1, 'two', [3]]],
    ['[1, 2,]', [1, 2]],
    ['{}', {}],
    ["{ a: 1, 'b c': [true], d: { e: null } }", { a: 1, 'b c': [true], d: { e: null } }],
  ])('%s', (expression, value) => {
    expect(run(expression)).toEqual(value);
  });
});

describe('operator precedence and associativity', () => {
  it.each([
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['2 * 3 % 4', 2],
    ['100 / 10 / 5', 2],
    ['-2 * 3', -6],
    ['- -2', 2],
    ['!true == false', true],
    ['1 + 1 == 2', true],
    ['1 < 2 == 2 > 1', true],
    ['true || false && false', true],
    ['(true || false) && false', false],
    ['false && false || true', true],
    ['null ?? false || 3', 3],
    ['1 == 1 ? "y" : "n"', 'y'],
    ['false ? 1 : true ? 2 : 3', 2],
    ['true ? false ? 1 : 2 : 3', 2],
    ['!!inputs.topic', true],
    ['inputs.count * 2 + 1 > 6 && inputs.topic == "Mars"', true],
    ['"n=" + 1 + 2', 'n=12'],
    ['1 + 2 + "!"', '3!'],
  ])('%s → %j', (expression, value) => {
    expect(run(expression)).toEqual(value);
  });
});

describe('semantics', () => {
  it('reads properties, indexes and lengths', () => {
    expect(run('inputs.nested.deep.value')).toBe(42);
    expect(run("inputs['nested']['deep'].value")).toBe(42);
    expect(run('inputs.tags[1]')).toBe('b');
    expect(run('inputs.tags[-1]')).toBe('c');
    expect(run('inputs.tags.length')).toBe(3);
    expect(run('inputs.topic[0]')).toBe('M');
    expect(run('inputs.topic.length')).toBe(4);
    expect(run('steps.plan.output.items')).toEqual(['q1', 'q2']);
  });

  it('gives null for what is absent, without throwing', () => {
    expect(run('inputs.missing')).toBeNull();
    expect(run('inputs.missing.deeper.still')).toBeNull();
    expect(run('inputs.none.x')).toBeNull();
    expect(run('inputs.tags[10]')).toBeNull();
    expect(run('steps.failed.output.items')).toBeNull();
  });

  it('compares structurally and without coercion', () => {
    expect(run('[1, [2]] == [1, [2]]')).toBe(true);
    expect(run('{a: 1, b: 2} == {b: 2, a: 1}')).toBe(true);
    expect(run("1 == '1'")).toBe(false);
    expect(run('null == false')).toBe(false);
    expect(run('inputs.none == null')).toBe(true);
    expect(run("'a' < 'b'")).toBe(true);
    expect(run('[1] != [2]')).toBe(true);
  });

  it('short-circuits: the other side is not evaluated', () => {
    expect(run('false && undefinedName')).toBe(false);
    expect(run('true || undefinedName')).toBe(true);
    expect(run("'set' ?? undefinedName")).toBe('set');
    expect(run('true ? 1 : undefinedName')).toBe(1);
  });

  it('&& and || return operands, ! returns a boolean; truthiness is JavaScript-like', () => {
    expect(run("inputs.empty || 'fallback'")).toBe('fallback');
    expect(run("inputs.topic && 'yes'")).toBe('yes');
    expect(run('inputs.empty ?? "kept"')).toBe('');
    expect(run('!inputs.empty')).toBe(true);
    expect(run('![]')).toBe(false);
    expect(run('!0')).toBe(true);
  });

  it('concatenates strings and arrays with +', () => {
    expect(run("'a' + null")).toBe('a');
    expect(run("'list: ' + [1, 2]")).toBe('list: [1,2]');
    expect(run('[1] + [2, 3]')).toEqual([1, 2, 3]);
  });

  it('reads only names of the scope; inherited names do not exist', () => {
    expect(failure('toString').code).toBe('unknown_reference');
    expect(failure('hasOwnProperty').code).toBe('unknown_reference');
    expect(run('inputs.toString')).toBeNull();
    expect(run('inputs.hasOwnProperty')).toBeNull();
    expect(failure('inputs.tags.map').code).toBe('expression_type');
  });

  it('is deterministic: the same expression and scope give the same value', () => {
    const expression = "format('{0}/{1}', json(steps.plan.output), keys(inputs))";
    expect(run(expression)).toBe(run(expression));
    expect(run(expression)).toBe('{"items":["q1","q2"],"ok":true}/["topic","count","tags","nested","empty","none"]');
  });

  it('does not mutate the scope', () => {
    const frozen = structuredClone(scope);
    run('[inputs.tags, {a: inputs}]');
    renderTemplate({ x: '${{ inputs }}' }, scope);
    expect(scope).toEqual(frozen);
  });
});

describe('prototype access is refused', () => {
  it.each([
    ['inputs.constructor', 7],
    ['inputs.__proto__', 7],
    ['inputs.tags.prototype', 12],
    ["inputs['constructor']", 7],
    ['inputs["__proto__"]', 7],
    ['constructor', 0],
    ['__proto__', 0],
    ['{ __proto__: 1 }', 2],
    ["{ 'constructor': 1 }", 2],
  ])('%s is a parse error at %i', (expression, position) => {
    const error = failure(expression);
    expect(error.code).toBe('forbidden_property');
    expect(error.position).toBe(position);
  });

  it('computed keys are checked when evaluated', () => {
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const error = failure('inputs[key]', { inputs: {}, key });
      expect(error.code).toBe('forbidden_property');
      expect(error.position).toBe(7);
    }
  });

  it('an own "__proto__" key of parsed JSON data stays unreadable', () => {
    const data = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as unknown;
    expect(run('data.ok', { data })).toBe(1);
    expect(failure('data[k]', { data, k: '__proto__' }).code).toBe('forbidden_property');
    expect(run("contains(data, '__proto__')", { data })).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('values of a scope are never called, and nothing can be called but the whitelist', () => {
    const s = { f: () => 'called', inputs: { fn: () => 'called' } };
    expect(failure('f()', s).code).toBe('unknown_function');
    expect(failure('inputs.fn()', s).code).toBe('expression_syntax');
    expect(failure("inputs['fn']()", s).code).toBe('expression_syntax');
  });
});

describe('errors carry a message and a position', () => {
  it.each<[string, string, number]>([
    ['1 +', 'expression_syntax', 3],
    ['(1 + 2', 'expression_syntax', 6],
    ['[1, 2', 'expression_syntax', 5],
    ['a b', 'expression_syntax', 2],
    ['1 = 2', 'expression_syntax', 2],
    ['a & b', 'expression_syntax', 2],
    ['a | b', 'expression_syntax', 2],
    ["'open", 'expression_syntax', 0],
    ["'bad \\q'", 'expression_syntax', 5],
    ['1.2.3', 'expression_syntax', 4],
    ['12abc', 'expression_syntax', 0],
    ['inputs.', 'expression_syntax', 7],
    ['inputs.1', 'expression_syntax', 7],
    ['#', 'expression_syntax', 0],
    ['', 'expression_syntax', 0],
    ['{a: 1, a: 2}', 'expression_syntax', 7],
    ['x ? 1', 'expression_syntax', 5],
    ['nope(1)', 'unknown_function', 0],
    ['length()', 'expression_syntax', 0],
    ['join(1, 2, 3)', 'expression_syntax', 0],
    ['missing + 1', 'unknown_reference', 0],
    ['inputs.topic * 2', 'expression_type', 0],
    ['1 - "a"', 'expression_type', 4],
    ['-inputs.topic', 'expression_type', 1],
    ["'a' < 1", 'expression_type', 0],
    ['inputs.count / 0', 'expression_type', 15],
    ['inputs.count % 0', 'expression_type', 15],
    ['inputs.count.x', 'expression_type', 13],
    ['inputs.tags.x', 'expression_type', 12],
    ['inputs.tags[true]', 'expression_type', 12],
    ['upper(inputs.count)', 'expression_type', 6],
    ['slice(inputs.tags, "1")', 'expression_type', 19],
    ['1e308 * 10', 'expression_limit', 0],
  ])('%s → %s at %i', (expression, code, position) => {
    const error = failure(expression);
    expect(error.code).toBe(code);
    expect(error.position).toBe(position);
    expect(error.message).toMatch(/position \d+/);
  });

  it('suggests the closest function name', () => {
    expect(failure('lenght(inputs.tags)').message).toContain('did you mean "length"');
  });

  it('limits length and nesting', () => {
    expect(failure('1' + ' + 1'.repeat(2000)).code).toBe('expression_limit');
    expect(failure('('.repeat(100) + '1' + ')'.repeat(100)).code).toBe('expression_limit');
    expect(failure('!'.repeat(100) + 'true').code).toBe('expression_limit');
  });

  it('positions inside a template are offsets in the whole string', () => {
    try {
      renderTemplate('Hello ${{ inputs.topic + }}!', scope);
      expect.unreachable();
    } catch (error) {
      expect((error as ExpressionError).position).toBe(25);
    }
    try {
      renderTemplate('A ${{ inputs.topic }} and ${{ nope }}', scope);
      expect.unreachable();
    } catch (error) {
      expect((error as ExpressionError).code).toBe('unknown_reference');
      expect((error as ExpressionError).position).toBe(30);
    }
  });

  it('parsing never throws anything but ExpressionError', () => {
    const alphabet = fc.constantFrom(...'ab1 .[](){}\'"\\,:?!=<>&|+-*/%$#_'.split(''), 'true', 'null', 'steps', 'len', 'length(', '${{', '}}');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 40 }).map((parts) => parts.join('')), (source) => {
        for (const attempt of [() => parseExpression(source), () => parseTemplate(source), () => renderTemplate(source, scope)]) {
          try {
            attempt();
          } catch (error) {
            if (!(error instanceof ExpressionError)) throw error;
            expect(error.position).toBeGreaterThanOrEqual(0);
            expect(error.position).toBeLessThanOrEqual(source.length + 1);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('functions', () => {
  it('has exactly the whitelisted functions', () => {
    expect([...FUNCTION_NAMES].sort()).toEqual(['contains', 'default', 'format', 'join', 'json', 'keys', 'length', 'lower', 'slice', 'trim', 'upper']);
  });

  it.each<[string, unknown]>([
    ['length(inputs.tags)', 3],
    ["length('héllo')", 5],
    ["length('😀')", 1],
    ['length({a: 1, b: 2})', 2],
    ['length(null)', 0],
    ['join(inputs.tags)', 'a,b,c'],
    ["join(inputs.tags, ' | ')", 'a | b | c'],
    ["join([1, null, true, {a: 1}], ';')", '1;;true;{"a":1}'],
    ['join(null)', ''],
    ["contains('research', 'search')", true],
    ["contains(inputs.tags, 'b')", true],
    ['contains([[1], [2]], [2])', true],
    ["contains({a: 1}, 'a')", true],
    ["contains(null, 'a')", false],
    ["lower('MiXed')", 'mixed'],
    ["upper('MiXed')", 'MIXED'],
    ['lower(null)', ''],
    ["trim('  pad  ')", 'pad'],
    ['json({b: [1, "x"], a: null})', '{"b":[1,"x"],"a":null}'],
    ['json([1], 2)', '[\n  1\n]'],
    ['json(null)', 'null'],
    ["default(null, 'x')", 'x'],
    ["default('', 'x')", ''],
    ['default(null, null, 3)', 3],
    ['default(null, null)', null],
    ['keys({b: 1, a: 2})', ['b', 'a']],
    ['keys(null)', []],
    ['slice(inputs.tags, 1)', ['b', 'c']],
    ['slice(inputs.tags, 0, -1)', ['a', 'b']],
    ["slice('abcdef', 2, 4)", 'cd'],
    ["slice('a😀b', 1, 2)", '😀'],
    ['slice(null, 0)', null],
    ["format('{0} + {0} = {1}', 1, 2)", '1 + 1 = 2'],
    ["format('{{literal}} {0}', 'x')", '{literal} x'],
    ["format('{0}', [1])", '[1]'],
  ])('%s', (expression, value) => {
    expect(run(expression)).toEqual(value);
  });

  it.each([
    ["format('{1}', 'only one')", 'placeholder {1} has no argument'],
    ["format('{x}', 1)", 'invalid placeholder'],
    ["format('a } b')", 'unmatched "}"'],
    ['length(5)', 'length() expects'],
    ['keys([1])', 'keys() expects an object'],
    ["contains('abc', 1)", 'expects a string to look for'],
    ['json(1, 99)', 'indent must be between 0 and 10'],
    ['slice({}, 0)', 'slice() expects an array or a string'],
  ])('%s fails: %s', (expression, message) => {
    const error = failure(expression);
    expect(error.code).toBe('expression_type');
    expect(error.message).toContain(message);
  });
});

describe('templates', () => {
  it('one whole ${{ }} yields the raw value', () => {
    expect(renderTemplate('${{ steps.plan.output.items }}', scope)).toEqual(['q1', 'q2']);
    expect(renderTemplate('${{ inputs.count }}', scope)).toBe(3);
    expect(renderTemplate('${{ inputs.none }}', scope)).toBeNull();
    expect(renderTemplate('${{inputs.count}}', scope)).toBe(3);
  });

  it('mixed text interpolates', () => {
    expect(renderTemplate('Topic: ${{ inputs.topic }} (${{ inputs.count }})', scope)).toBe('Topic: Mars (3)');
    expect(renderTemplate(' ${{ inputs.count }}', scope)).toBe(' 3');
    expect(renderTemplate('${{ inputs.count }}${{ inputs.count }}', scope)).toBe('33');
    expect(renderTemplate('items: ${{ steps.plan.output.items }}', scope)).toBe('items: ["q1","q2"]');
    expect(renderTemplate('[${{ inputs.none }}]', scope)).toBe('[]');
    expect(renderTemplate('flag=${{ true }}', scope)).toBe('flag=true');
  });

  it('handles braces and "}}" inside expressions', () => {
    expect(renderTemplate("${{ {a: {b: 1}} }}", scope)).toEqual({ a: { b: 1 } });
    expect(renderTemplate("x ${{ format('{{0}}', 1) }} y", scope)).toBe('x {0} y');
    expect(renderTemplate("${{ '}}' }}", scope)).toBe('}}');
    expect(renderTemplate("literal ${{ '${{' }} kept", scope)).toBe('literal ${{ kept');
  });

  it('leaves text without ${{ alone', () => {
    expect(renderTemplate('plain $ {{ }} text', scope)).toBe('plain $ {{ }} text');
    expect(renderTemplate('', scope)).toBe('');
  });

  it('renders deeply: objects and arrays, keys untouched, other values kept', () => {
    const value = {
      '${{ key }}': 'kept key',
      list: ['${{ inputs.count }}', 'n=${{ vars.n }}', 7, false, null],
      nested: { inner: '${{ steps.plan.output.ok }}' },
    };
    const before = structuredClone(value);
    expect(renderTemplate(value, scope)).toEqual({
      '${{ key }}': 'kept key',
      list: [3, 'n=2', 7, false, null],
      nested: { inner: true },
    });
    expect(value).toEqual(before);
  });

  it('renders an own "__proto__" key as data, without touching prototypes', () => {
    const value = JSON.parse('{"__proto__": "${{ inputs.topic }}"}') as unknown;
    const out = renderTemplate(value, scope) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out, '__proto__')?.value).toBe('Mars');
  });

  it('evaluate accepts a bare expression or one whole ${{ }}', () => {
    expect(evaluate('inputs.count + 1', scope)).toBe(4);
    expect(evaluate('${{ inputs.count + 1 }}', scope)).toBe(4);
    expect(() => evaluate('a ${{ 1 }}', scope)).toThrow(ExpressionError);
    expect(evaluate(parseExpression('vars.n * 10'), scope)).toBe(20);
  });

  it('isExpression tells whole expressions from templates', () => {
    expect(isExpression('${{ a }}')).toBe(true);
    expect(isExpression("${{ '}}' }}")).toBe(true);
    expect(isExpression('${{ a }} ')).toBe(false);
    expect(isExpression('${{ a }}${{ b }}')).toBe(false);
    expect(isExpression('text')).toBe(false);
  });

  it('reports unterminated and empty blocks', () => {
    expect(() => parseTemplate('a ${{ b')).toThrow(/unterminated "\$\{\{" at position 2/);
    expect(() => parseTemplate('a ${{ }}')).toThrow(/empty expression at position 2/);
    expect(() => parseTemplate("a ${{ 'b }}")).toThrow(/unterminated string starting at position 6/);
  });
});

describe('extractReferences', () => {
  it('finds roots and static paths with their spans', () => {
    expect(extractReferences('steps.plan.output.items[0]')).toEqual([
      { root: 'steps', path: ['plan', 'output', 'items', 0], dynamic: false, start: 0, end: 26 },
    ]);
    expect(extractReferences("inputs['a b'].c")).toEqual([{ root: 'inputs', path: ['a b', 'c'], dynamic: false, start: 0, end: 15 }]);
  });

  it('stops at computed accessors and reports what they read', () => {
    const refs = extractReferences('steps.plan.output[vars.i].name');
    expect(refs.map((r) => [r.root, r.path, r.dynamic])).toEqual([
      ['steps', ['plan', 'output'], true],
      ['vars', ['i'], false],
    ]);
  });

  it('walks calls, operators, literals and templates', () => {
    const refs = extractReferences("Hi ${{ default(vars.a, inputs.b) }}, ${{ loop.index > 0 ? [item] : {k: steps.x.status} }}");
    expect(refs.map((r) => `${[r.root, ...r.path].join('.')}@${r.start}`)).toEqual([
      'vars.a@15',
      'inputs.b@23',
      'loop.index@41',
      'item@59',
      'steps.x.status@71',
    ]);
  });

  it('reports nothing for literals and references from calls on results', () => {
    expect(extractReferences('1 + 2')).toEqual([]);
    expect(extractReferences('keys(inputs)[0]').map((r) => r.root)).toEqual(['inputs']);
  });

  it('throws ExpressionError on bad syntax', () => {
    expect(() => extractReferences('a +')).toThrow(ExpressionError);
  });
});

describe('inferType', () => {
  const types = (expression: string) =>
    inferType(parseExpression(expression), (r) => (r.root === 'inputs' && r.path.length === 1 && r.path[0] === 'list' ? 'array' : 'unknown'));
  it.each([
    ['[1]', 'array'],
    ['{}', 'object'],
    ["'s'", 'string'],
    ['1 + 2', 'number'],
    ["'a' + inputs.x", 'string'],
    ['inputs.x + 1', 'unknown'],
    ['inputs.list', 'array'],
    ['inputs.list[0]', 'unknown'],
    ['slice(inputs.list, 1)', 'array'],
    ['keys(inputs)', 'array'],
    ['length(inputs.list)', 'number'],
    ['json(1)', 'string'],
    ['a == b', 'boolean'],
    ['!a', 'boolean'],
    ['a ? [1] : [2]', 'array'],
    ['a ? [1] : 2', 'unknown'],
    ['a || b', 'unknown'],
    ['default(a, [])', 'unknown'],
  ])('%s → %s', (expression, type) => {
    expect(types(expression)).toBe(type);
  });
});
