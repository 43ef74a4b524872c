// Structural analysis of a document: its blocks of steps, ids, and the dependency graph of each
// block (needs, sequence order, switch routes, fallbacks), with the errors found on the way.
// Defensive: it accepts any value and skips what the JSON Schema already reports as malformed,
// so it can run (and report graph errors) even on a document that has schema errors.
// Pure and deterministic; shared by the semantic checker and the compiler.
import { FORBIDDEN_PROPERTIES } from './expression/errors.ts';
import { suggest } from './expression/parser.ts';
import { isPlainObject } from './expression/values.ts';
import { pointerJoin } from './pointer.ts';
import type { DslError, DslWarning } from './types.ts';

export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Most steps in one document, all blocks together. */
export const MAX_STEPS = 500;
/** Most nested blocks (map in loop in parallel …). */
export const MAX_NESTING = 8;
/** Names the expression scope gives a meaning to; a map variable cannot take them. */
export const SCOPE_ROOTS = ['inputs', 'steps', 'vars', 'loop'] as const;

export interface StepNode {
  /** The id when it is a valid identifier, else undefined (the schema reports it). */
  id: string | undefined;
  kind: string | undefined;
  raw: Record<string, unknown>;
  pointer: string;
  /** Position in its block. */
  index: number;
  block: BlockNode;
  /** Nested blocks (map/loop: one; parallel: one per branch). */
  children: BlockNode[];
}

export interface BlockNode {
  /** Pointer of the `steps` array. */
  pointer: string;
  steps: StepNode[];
  container: StepNode | null;
  branch: string | null;
  depth: number;
  mode: 'dag' | 'sequence';
  /** Steps of this block with a valid, unique id. */
  byId: Map<string, StepNode>;
  handlers: Set<string>;
  handlerFor: Map<string, string[]>;
  /** Target step → the switch that routes to it. */
  switchOf: Map<string, string>;
  /** Explicit, valid `needs` of each step. */
  needs: Map<string, string[]>;
  /** Everything each step waits for (cycle-closing edges removed). */
  dependencies: Map<string, string[]>;
  /** Transitive dependencies: the steps certainly settled before each step starts. */
  ancestors: Map<string, Set<string>>;
  /** Variables set by `set` steps of this block. */
  vars: Set<string>;
  /** Steps in a topological order (document order among equals), handlers last. */
  order: string[];
}

export interface Analysis {
  root: BlockNode;
  blocks: BlockNode[];
  /** First step of each id (duplicates are reported and ignored). */
  steps: Map<string, StepNode>;
  /** Every step node, depth-first in document order. */
  all: StepNode[];
  errors: DslError[];
  warnings: DslWarning[];
}

const isString = (value: unknown): value is string => typeof value === 'string';

function newBlock(pointer: string, container: StepNode | null, branch: string | null, depth: number): BlockNode {
  return {
    pointer,
    steps: [],
    container,
    branch,
    depth,
    mode: 'sequence',
    byId: new Map(),
    handlers: new Set(),
    handlerFor: new Map(),
    switchOf: new Map(),
    needs: new Map(),
    dependencies: new Map(),
    ancestors: new Map(),
    vars: new Set(),
    order: [],
  };
}

export function analyze(document: unknown): Analysis {
  const errors: DslError[] = [];
  const warnings: DslWarning[] = [];
  const error = (code: DslError['code'], pointer: string, message: string) => errors.push({ code, message, pointer });
  const blocks: BlockNode[] = [];
  const all: StepNode[] = [];
  const steps = new Map<string, StepNode>();

  const doc = isPlainObject(document) ? document : {};
  const root = newBlock('/steps', null, null, 0);

  // 1. Collect blocks and steps, depth first in document order.
  const collect = (value: unknown, block: BlockNode): void => {
    blocks.push(block);
    if (!Array.isArray(value)) return;
    if (block.depth > MAX_NESTING && block.container) {
      error('limit_exceeded', block.container.pointer, `steps are nested more than ${MAX_NESTING} levels deep`);
      return;
    }
    value.forEach((item, index) => {
      if (!isPlainObject(item)) return;
      const pointer = pointerJoin(block.pointer, index);
      const id = isString(item.id) && IDENTIFIER.test(item.id) ? item.id : undefined;
      const kind = isString(item.kind) ? item.kind : undefined;
      const node: StepNode = { id, kind, raw: item, pointer, index, block, children: [] };
      block.steps.push(node);
      all.push(node);
      if (id !== undefined) {
        if (FORBIDDEN_PROPERTIES.has(id)) {
          error('reserved_name', pointerJoin(pointer, 'id'), `"${id}" cannot be used as a step id`);
        } else {
          const first = steps.get(id);
          if (first) {
            error('duplicate_id', pointerJoin(pointer, 'id'), `duplicate step id "${id}" (first defined at ${first.pointer}); ids are unique in the whole document`);
          } else {
            steps.set(id, node);
            block.byId.set(id, node);
          }
        }
      }
      if ((kind === 'map' || kind === 'loop') && item.steps !== undefined) {
        const child = newBlock(pointerJoin(pointer, 'steps'), node, null, block.depth + 1);
        node.children.push(child);
        collect(item.steps, child);
      } else if (kind === 'parallel' && isPlainObject(item.branches)) {
        for (const [name, branch] of Object.entries(item.branches)) {
          if (FORBIDDEN_PROPERTIES.has(name)) {
            error('reserved_name', pointerJoin(pointer, 'branches', name), `"${name}" cannot be used as a branch name`);
            continue;
          }
          if (!isPlainObject(branch)) continue;
          const child = newBlock(pointerJoin(pointer, 'branches', name, 'steps'), node, name, block.depth + 1);
          node.children.push(child);
          collect(branch.steps, child);
        }
      }
    });
  };
  collect(doc.steps, root);

  if (all.length > MAX_STEPS) error('limit_exceeded', '/steps', `the workflow has ${all.length} steps; the limit is ${MAX_STEPS}`);

  const allIds = [...steps.keys()];
  const unknownStep = (pointer: string, target: string, what: string) =>
    error('unknown_step', pointer, `${what} "${target}" is not a step of this workflow${suggest(target, allIds)}`);
  const sameBlockHint = (target: StepNode, block: BlockNode): string => {
    for (let c = block.container; c; c = c.block.container) if (c === target) return ` ("${target.id}" is the step that contains this block)`;
    return '';
  };

  // 2. Per block: names, handlers, switch routes, needs, dependencies, cycles, ancestors, order.
  // Only registered steps (valid, first-of-their-id) take part in the graph.
  for (const block of blocks) {
    const registered = (step: StepNode): step is StepNode & { id: string } => step.id !== undefined && block.byId.get(step.id) === step;
    block.mode = block.steps.some((s) => s.raw.needs !== undefined) ? 'dag' : 'sequence';

    for (const step of block.steps) {
      const raw = step.raw;
      // Reserved names of map variables and set variables.
      if (step.kind === 'map') {
        const names: [string, unknown][] = [['as', raw.as], ['index_as', raw.index_as]];
        for (const [field, name] of names) {
          if (isString(name) && (FORBIDDEN_PROPERTIES.has(name) || (SCOPE_ROOTS as readonly string[]).includes(name))) {
            error('reserved_name', pointerJoin(step.pointer, field), `"${name}" cannot be a variable name: it is reserved`);
          }
        }
        const item = isString(raw.as) ? raw.as : 'item';
        const index = isString(raw.index_as) ? raw.index_as : 'index';
        if (item === index && (raw.as !== undefined || raw.index_as !== undefined)) {
          error('reserved_name', pointerJoin(step.pointer, raw.index_as !== undefined ? 'index_as' : 'as'), `the item and index variables are both named "${item}"`);
        }
      }
      if (step.kind === 'set' && isPlainObject(raw.values)) {
        for (const name of Object.keys(raw.values)) {
          if (FORBIDDEN_PROPERTIES.has(name)) error('reserved_name', pointerJoin(step.pointer, 'values', name), `"${name}" cannot be a variable name`);
          else block.vars.add(name);
        }
      }
    }

    // Fallback handlers.
    for (const step of block.steps) {
      const onError = step.raw.on_error;
      if (!isPlainObject(onError) || !isString(onError.fallback) || !registered(step)) continue;
      const target = onError.fallback;
      const pointer = pointerJoin(step.pointer, 'on_error', 'fallback');
      const node = steps.get(target);
      if (!node) unknownStep(pointer, target, 'fallback step');
      else if (node === step) error('invalid_fallback', pointer, `step "${target}" cannot be its own fallback`);
      else if (node.block !== block) error('invalid_fallback', pointer, `fallback step "${target}" must be in the same block as "${step.id}"${sameBlockHint(node, block)}`);
      else {
        block.handlers.add(target);
        block.handlerFor.set(target, [...(block.handlerFor.get(target) ?? []), step.id]);
      }
    }
    // Fallback chains that loop (a → b → a).
    for (const step of block.steps) {
      if (!registered(step) || !block.handlerFor.has(step.id)) continue;
      const seen = [step.id];
      let current: StepNode | undefined = step;
      while (current) {
        const onError: unknown = current.raw.on_error;
        const next: unknown = isPlainObject(onError) ? onError.fallback : undefined;
        if (!isString(next) || !block.handlers.has(next)) break;
        if (next === step.id) {
          if (seen.every((id) => id >= step.id!)) {
            // Report once per loop, at the step with the smallest id.
            error('cycle', pointerJoin(current.pointer, 'on_error', 'fallback'), `fallback steps form a cycle: ${[...seen, next].map((s) => `"${s}"`).join(' → ')}`);
          }
          break;
        }
        if (seen.includes(next)) break;
        seen.push(next);
        current = block.byId.get(next);
      }
    }
    for (const handler of block.handlers) {
      const node = block.byId.get(handler)!;
      if (node.raw.needs !== undefined) {
        const users = block.handlerFor.get(handler)!;
        error('invalid_fallback', pointerJoin(node.pointer, 'needs'), `fallback step "${handler}" cannot declare needs: it runs in place of ${users.map((u) => `"${u}"`).join(', ')}, after its dependencies`);
      }
    }

    // Switch routes.
    const edgePointer = new Map<string, string>();
    const switchEdges = new Set<string>();
    const edgeKey = (from: string, to: string) => `${from}\u0000${to}`;
    for (const sw of block.steps) {
      if (sw.kind !== 'switch' || !registered(sw)) continue;
      const targets: [string, string][] = [];
      if (Array.isArray(sw.raw.cases)) {
        sw.raw.cases.forEach((c, i) => {
          if (isPlainObject(c) && isString(c.then)) targets.push([c.then, pointerJoin(sw.pointer, 'cases', i, 'then')]);
        });
      }
      if (isString(sw.raw.default)) targets.push([sw.raw.default, pointerJoin(sw.pointer, 'default')]);
      for (const [target, pointer] of targets) {
        const node = steps.get(target);
        if (!node) {
          unknownStep(pointer, target, 'switch target');
          continue;
        }
        const routed = block.switchOf.get(target);
        if (routed === sw.id) continue; // several cases may lead to the same step
        if (node === sw) error('invalid_switch_target', pointer, `switch "${sw.id}" cannot route to itself`);
        else if (node.block !== block) error('invalid_switch_target', pointer, `switch target "${target}" must be a step of the same block as "${sw.id}"${sameBlockHint(node, block)}`);
        else if (block.handlers.has(target)) error('invalid_switch_target', pointer, `"${target}" is a fallback step; it cannot also be a switch target`);
        else if (routed !== undefined) error('invalid_switch_target', pointer, `"${target}" is already a target of switch "${routed}"; a step can be routed by one switch only`);
        else if (block.mode === 'sequence' && node.index < sw.index) error('invalid_switch_target', pointer, `switch target "${target}" must come after switch "${sw.id}" (the block runs in order)`);
        else {
          block.switchOf.set(target, sw.id);
          edgePointer.set(edgeKey(target, sw.id), pointer);
          switchEdges.add(edgeKey(target, sw.id));
        }
      }
    }

    // Explicit needs.
    for (const step of block.steps) {
      if (!registered(step)) continue;
      const valid: string[] = [];
      if (Array.isArray(step.raw.needs)) {
        step.raw.needs.forEach((need, j) => {
          if (!isString(need)) return;
          const pointer = pointerJoin(step.pointer, 'needs', j);
          const node = steps.get(need);
          if (!node) return unknownStep(pointer, need, 'needed step');
          if (node === step) {
            valid.push(need);
            edgePointer.set(edgeKey(step.id, need), pointer);
            return;
          }
          if (node.block !== block) {
            const enclosing = sameBlockHint(node, block);
            return error(
              'invalid_need',
              pointer,
              enclosing
                ? `"${need}" contains this step; nested steps start after it has started and cannot need it`
                : `"${need}" is not in the same block as "${step.id}"; \`needs\` names steps of the same block (a nested step sees the steps its container needs)`,
            );
          }
          if (block.handlers.has(need)) {
            return error('invalid_need', pointer, `"${need}" is a fallback step, which only runs in place of a failed step; depend on ${(block.handlerFor.get(need) ?? []).map((u) => `"${u}"`).join(', ')} instead`);
          }
          if (node.kind === 'output') {
            return error('unreachable_step', pointer, `step "${step.id}" can never run: "${need}" is an output step, which ends the block`);
          }
          if (!valid.includes(need)) {
            valid.push(need);
            edgePointer.set(edgeKey(step.id, need), pointer);
          }
        });
      }
      block.needs.set(step.id, valid);
    }

    // Dependencies: explicit needs (dag) or the previous step (sequence), plus the routing switch.
    let previous: StepNode | undefined;
    let unreachableReported = false;
    for (const step of block.steps) {
      if (!registered(step)) continue;
      const deps: string[] = [];
      if (block.handlers.has(step.id)) {
        block.dependencies.set(step.id, deps);
        continue;
      }
      if (block.mode === 'dag') deps.push(...(block.needs.get(step.id) ?? []));
      else if (previous?.id !== undefined) {
        deps.push(previous.id);
        const ended = previous.kind === 'output' && previous.raw.if === undefined && !block.switchOf.has(previous.id);
        if (ended && !unreachableReported) {
          unreachableReported = true;
          error('unreachable_step', step.pointer, `step "${step.id}" can never run: output step "${previous.id}" before it always ends the block`);
        }
      }
      const sw = block.switchOf.get(step.id);
      if (sw !== undefined && !deps.includes(sw)) deps.push(sw);
      block.dependencies.set(step.id, deps);
      previous = step;
    }

    // Cycles: depth-first in document order; each back edge is reported at the entry that closes it.
    const state = new Map<string, 'visiting' | 'done'>();
    const stack: string[] = [];
    const visit = (id: string): void => {
      state.set(id, 'visiting');
      stack.push(id);
      const deps = block.dependencies.get(id) ?? [];
      for (const dep of [...deps]) {
        const s = state.get(dep);
        if (s === 'visiting') {
          // The cycle is reported at a switch route when it contains one (routing back is the
          // mistake), else at the needs entry of its last step in document order.
          const cycle = stack.slice(stack.indexOf(dep));
          const edges = cycle.map((from, i) => [from, cycle[i + 1] ?? dep] as const);
          const describe = ([from, to]: readonly [string, string]) =>
            switchEdges.has(edgeKey(from, to)) ? `switch "${to}" routes to "${from}"` : `"${from}" needs "${to}"`;
          const index = (sid: string) => block.byId.get(sid)?.index ?? -1;
          const blamed =
            edges.find((e) => switchEdges.has(edgeKey(e[0], e[1]))) ??
            edges.reduce((best, e) => (index(e[0]) > index(best[0]) ? e : best));
          const pointer = edgePointer.get(edgeKey(blamed[0], blamed[1])) ?? block.byId.get(blamed[0])!.pointer;
          error('cycle', pointer, cycle.length === 1 ? `step "${id}" needs itself` : `steps form a cycle: ${edges.map(describe).join(', ')}`);
          deps.splice(deps.indexOf(dep), 1);
        } else if (s === undefined && block.dependencies.has(dep)) {
          visit(dep);
        }
      }
      stack.pop();
      state.set(id, 'done');
    };
    for (const step of block.steps) if (step.id !== undefined && block.dependencies.has(step.id) && !state.has(step.id)) visit(step.id);

    // Ancestors (the graph is acyclic now). A step has settled only after its fallback chain
    // ran, so the fallback steps of a dependency are settled too.
    const fallbackChain = (id: string): string[] => {
      const chain: string[] = [];
      for (let current = block.byId.get(id); current; ) {
        const onError: unknown = current.raw.on_error;
        const next: unknown = isPlainObject(onError) ? onError.fallback : undefined;
        if (!isString(next) || !block.handlers.has(next) || chain.includes(next) || next === id) break;
        chain.push(next);
        current = block.byId.get(next);
      }
      return chain;
    };
    const ancestorsOf = (id: string): Set<string> => {
      const known = block.ancestors.get(id);
      if (known) return known;
      const out = new Set<string>();
      block.ancestors.set(id, out);
      for (const dep of block.dependencies.get(id) ?? []) {
        out.add(dep);
        for (const handler of fallbackChain(dep)) out.add(handler);
        for (const a of ancestorsOf(dep)) out.add(a);
      }
      return out;
    };
    for (const id of block.dependencies.keys()) ancestorsOf(id);
    // A handler runs in place of a failed step: it sees what all of its users see, and the users.
    for (const [handler, users] of block.handlerFor) {
      const sets = users.map((u) => new Set([...(block.ancestors.get(u) ?? []), u]));
      const shared = new Set([...(sets[0] ?? [])].filter((id) => sets.every((s) => s.has(id)) && id !== handler));
      block.ancestors.set(handler, shared);
    }

    // Topological order: Kahn's algorithm, ready steps taken in document order; handlers last.
    const remaining = new Map<string, number>();
    const regular = block.steps.filter((s) => s.id !== undefined && block.dependencies.has(s.id) && !block.handlers.has(s.id));
    for (const s of regular) remaining.set(s.id!, (block.dependencies.get(s.id!) ?? []).length);
    const done = new Set<string>();
    while (done.size < regular.length) {
      const next = regular.find((s) => !done.has(s.id!) && (block.dependencies.get(s.id!) ?? []).every((d) => done.has(d)));
      if (!next) break; // unreachable after cycle removal; defensive
      done.add(next.id!);
      block.order.push(next.id!);
    }
    for (const s of block.steps) if (s.id !== undefined && block.handlers.has(s.id)) block.order.push(s.id);
  }

  return { root, blocks, steps, all, errors, warnings };
}
