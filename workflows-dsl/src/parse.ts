// parseWorkflow: source text (YAML or JSON) → a validated document, or every error with its JSON
// pointer and, mapped back through the YAML CST, its line and column: syntax errors, schema
// errors and semantic errors alike. Never throws on bad input.
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, Scalar, type Document, type Node as YamlNode } from 'yaml';
import { findJsonError } from './json-scan.ts';
import { pointerJoin, pointerSegments } from './pointer.ts';
import type { DslError, DslWarning, ValidationResult, WorkflowDocument } from './types.ts';
import { validateDetailed, type Located } from './validate.ts';

export type SourceFormat = 'yaml' | 'json' | 'auto';

/** Largest accepted source, in characters. */
export const MAX_SOURCE_LENGTH = 1_000_000;
/** Most alias expansions in a YAML document (guards against "billion laughs"). */
export const MAX_ALIAS_COUNT = 100;

type Range = [number, number];

/** Maps JSON pointers and offsets of one parsed source to line/column positions. */
class SourceMap {
  readonly source: string;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;

  constructor(source: string, doc: Document.Parsed, lines: LineCounter) {
    this.source = source;
    this.doc = doc;
    this.lines = lines;
  }

  private resolve(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  /** The node at `pointer` (or its key), else the deepest existing ancestor. */
  find(pointer: string, key: boolean): YamlNode | undefined {
    let node = this.resolve(this.doc.contents) as YamlNode | undefined;
    const segments = pointerSegments(pointer);
    for (let i = 0; i < segments.length; i += 1) {
      const segment = segments[i]!;
      const last = i === segments.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === segment);
        if (!pair) return node;
        if (last && key) return pair.key as YamlNode;
        const value = this.resolve(pair.value) as YamlNode | null;
        if (!value) return pair.key as YamlNode;
        node = value;
      } else if (isSeq(node)) {
        const item = this.resolve(node.items[Number(segment)]) as YamlNode | undefined;
        if (!/^\d+$/.test(segment) || !item) return node;
        node = item;
      } else {
        return node;
      }
    }
    return node;
  }

  /**
   * Pointer of the node an error offset belongs to: within a mapping, the last entry whose key
   * starts at or before the offset; within a sequence, the last item starting at or before it. For syntax errors
   * (`structural` false) it stops at flow collections and at a collection whose first character
   * is the offset: a broken document's inner structure is guesswork, line and column carry the
   * detail.
   */
  pointerAt(offset: number, structural = false): string {
    let pointer = '';
    let node = this.resolve(this.doc.contents) as YamlNode | undefined;
    // A node "holds" the offset when it starts at or before it: after a syntax error the parser
    // often ends a node early, yet the error belongs to the last thing that was started.
    const holds = (n: YamlNode | null | undefined): n is YamlNode => !!n && !isAlias(n) && !!n.range && n.range[0] <= offset;
    for (;;) {
      if (!node || !(isMap(node) || isSeq(node))) return pointer;
      if (!structural && (node.flow || node.range?.[0] === offset)) return pointer;
      let next: { node: YamlNode | undefined; segment: string | number } | undefined;
      if (isMap(node)) {
        let entry: (typeof node.items)[number] | undefined;
        for (const pair of node.items) {
          const k = pair.key as YamlNode | null;
          if (isScalar(k) && k.range && k.range[0] <= offset) entry = pair;
        }
        if (entry) {
          const v = entry.value as YamlNode | null;
          next = { node: holds(v) ? v : undefined, segment: String((entry.key as Scalar).value) };
        }
      } else {
        node.items.forEach((item, i) => {
          const n = item as YamlNode | null;
          if (holds(n)) next = { node: n, segment: i };
        });
      }
      if (!next) return pointer;
      pointer = pointerJoin(pointer, next.segment);
      node = next.node;
    }
  }

  position(offset: number): { line: number; column: number } {
    const { line, col } = this.lines.linePos(Math.max(0, Math.min(offset, this.source.length)));
    return { line, column: col };
  }

  /** Offset of character `position` of a scalar's value in the source, when it can be mapped exactly. */
  scalarOffset(node: Scalar, position: number): number | undefined {
    const range = node.range;
    if (!range || typeof node.value !== 'string') return undefined;
    const value = node.value;
    const raw = this.source.slice(range[0], range[1]);
    switch (node.type) {
      case Scalar.PLAIN:
        return raw === value ? range[0] + position : undefined;
      case Scalar.QUOTE_DOUBLE:
      case Scalar.QUOTE_SINGLE: {
        if (raw.includes('\n')) return undefined; // folded multi-line string: not mapped
        const offsets = quotedOffsets(raw, node.type === Scalar.QUOTE_DOUBLE);
        // Exact by construction when decoding reproduces the value.
        if (!offsets || offsets.text !== value) return undefined;
        const at = offsets.map[position];
        return at === undefined ? undefined : range[0] + at;
      }
      case Scalar.BLOCK_LITERAL: {
        // Header line, then content lines sharing one indentation.
        const headerEnd = raw.indexOf('\n');
        if (headerEnd === -1) return undefined;
        const before = value.slice(0, position);
        const lineIndex = before.split('\n').length - 1;
        const column = position - (before.lastIndexOf('\n') + 1);
        const contentLines = raw.slice(headerEnd + 1).split('\n');
        const indent = Math.min(...contentLines.filter((l) => l.trim() !== '').map((l) => l.length - l.trimStart().length));
        if (!Number.isFinite(indent)) return undefined;
        let lineStart = range[0] + headerEnd + 1;
        for (let i = 0; i < lineIndex; i += 1) lineStart += (contentLines[i]?.length ?? 0) + 1;
        const offset = lineStart + indent + column;
        const expected = value.slice(position, position + 3);
        return this.source.slice(offset, offset + expected.length) === expected ? offset : undefined;
      }
      default:
        return undefined;
    }
  }

  locate<T extends DslError | DslWarning>({ error, key }: Located<T>): T {
    const node = this.find(error.pointer, key);
    const range = (node?.range ?? undefined) as [number, number, number] | undefined;
    if (!range) return error;
    let span: Range = [range[0], range[1]];
    if (error.position !== undefined && isScalar(node)) {
      const at = this.scalarOffset(node, error.position);
      if (at !== undefined) span = [at, at + 1];
    }
    const start = this.position(span[0]);
    const end = this.position(span[1]);
    return { ...error, line: start.line, column: start.column, endLine: end.line, endColumn: end.column };
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '0': '\0', a: '\x07', b: '\b', t: '\t', '\t': '\t', n: '\n', v: '\v', f: '\f', r: '\r', e: '\x1b',
  ' ': ' ', '"': '"', '/': '/', '\\': '\\', N: '\x85', _: '\xa0', L: '\u2028', P: '\u2029',
};
const HEX_ESCAPES: Record<string, number> = { x: 2, u: 4, U: 8 };

/**
 * Decodes a one-line quoted scalar (YAML double or single quotes; JSON strings are YAML
 * double-quoted strings) and maps each character of the value to its offset in `raw`.
 */
function quotedOffsets(raw: string, double: boolean): { text: string; map: number[] } | undefined {
  let text = '';
  const map: number[] = [];
  let i = 1;
  const end = raw.length - 1;
  while (i < end) {
    const c = raw[i]!;
    if (double && c === '\\') {
      const e = raw[i + 1] ?? '';
      const digits = HEX_ESCAPES[e];
      let decoded: string;
      let width: number;
      if (digits !== undefined) {
        const hex = raw.slice(i + 2, i + 2 + digits);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== digits) return undefined;
        decoded = String.fromCodePoint(parseInt(hex, 16));
        width = 2 + digits;
      } else if (Object.hasOwn(SIMPLE_ESCAPES, e)) {
        decoded = SIMPLE_ESCAPES[e]!;
        width = 2;
      } else {
        return undefined;
      }
      for (let k = 0; k < decoded.length; k += 1) map.push(i);
      text += decoded;
      i += width;
    } else if (!double && c === "'" && raw[i + 1] === "'") {
      map.push(i);
      text += "'";
      i += 2;
    } else {
      map.push(i);
      text += c;
      i += 1;
    }
  }
  map.push(end);
  return { text, map };
}

function detectFormat(source: string): 'yaml' | 'json' {
  return /^\s*[{[]/.test(source) ? 'json' : 'yaml';
}

/** A hint for the classic mistake: an unquoted `${{ a ? b : c }}` is a YAML mapping. */
function syntaxHint(source: string, offset: number, message: string): string {
  const lineStart = source.lastIndexOf('\n', offset - 1) + 1;
  const lineEnd = source.indexOf('\n', offset);
  const line = source.slice(lineStart, lineEnd === -1 ? undefined : lineEnd);
  if (/nested mappings|implicit keys|compact mappings/i.test(message) && line.includes('${{')) {
    return ' (a plain YAML value cannot contain ": " — put the ${{ … }} expression in quotes)';
  }
  return '';
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

function duplicateMessage(source: string, pos: [number, number]): string {
  const rest = source.slice(pos[0], pos[0] + 200);
  const quoted = /^(["'])((?:\\.|(?!\1).)*)\1/.exec(rest);
  const key = quoted ? quoted[2]! : (/^[^:\n,{}[\]]*/.exec(rest)?.[0] ?? '').trim();
  return key ? `duplicate key "${key}": keys of a mapping must be unique` : 'duplicate key: keys of a mapping must be unique';
}

/** JSON.parse, and on failure the first error located by a small scanner. */
function parseJson(source: string, lines: LineCounter): { value: unknown } | { error: DslError } {
  try {
    return { value: JSON.parse(source) as unknown };
  } catch (e) {
    const found = findJsonError(source);
    if (!found) return { error: { code: 'json_syntax', message: `invalid JSON: ${(e as Error).message.split('\n')[0]}`, pointer: '' } };
    const { line, col } = lines.linePos(Math.min(found.offset, source.length));
    return { error: { code: 'json_syntax', message: `invalid JSON: ${found.message}`, pointer: '', line, column: col, endLine: line, endColumn: col + 1 } };
  }
}

function byPosition(a: DslError | DslWarning, b: DslError | DslWarning): number {
  return (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? Infinity) - (b.column ?? Infinity);
}

/**
 * Parses and validates a workflow from YAML or JSON text. `auto` (the default) reads JSON when
 * the text starts with `{` or `[`, YAML otherwise. Returns every error found; never throws.
 */
export function parseWorkflow(source: string, format: SourceFormat = 'auto'): ValidationResult {
  if (typeof source !== 'string') {
    return { ok: false, errors: [{ code: 'schema', message: 'the source must be a string', pointer: '' }], warnings: [] };
  }
  if (source.length > MAX_SOURCE_LENGTH) {
    return { ok: false, errors: [{ code: 'limit_exceeded', message: `the source is longer than ${MAX_SOURCE_LENGTH} characters`, pointer: '' }], warnings: [] };
  }
  const text = source.charCodeAt(0) === 0xfeff ? source.slice(1) : source;
  const kind = format === 'auto' ? detectFormat(text) : format;
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, strict: true, keepSourceTokens: false });
  const map = new SourceMap(text, doc, lines);
  const warnings: DslWarning[] = [];

  let value: unknown;
  if (kind === 'json') {
    const parsed = parseJson(text, lines);
    if ('error' in parsed) {
      return { ok: false, errors: [parsed.error], warnings };
    }
    // JSON.parse keeps the last of duplicate keys silently; the YAML reading of the same text
    // reports them (JSON is YAML 1.2 flow syntax).
    const duplicates = doc.errors.filter((e) => e.code === 'DUPLICATE_KEY');
    if (duplicates.length > 0) {
      return {
        ok: false,
        errors: duplicates.map((e) => {
          const { line, column } = map.position(e.pos[0]);
          return { code: 'duplicate_key' as const, message: duplicateMessage(text, e.pos), pointer: map.pointerAt(e.pos[0], true), line, column };
        }),
        warnings,
      };
    }
    value = parsed.value;
  } else {
    if (doc.errors.length > 0) {
      // After a syntax error the rest of the text cannot be read reliably and the parser reports
      // a cascade; keep the first syntax error and every duplicate key (those are independent).
      const firstSyntax = doc.errors.find((e) => e.code !== 'DUPLICATE_KEY');
      const kept = doc.errors.filter((e) => e.code === 'DUPLICATE_KEY' || e === firstSyntax);
      const errors = kept.map((e): DslError => {
        const { line, column } = map.position(e.pos[0]);
        const end = map.position(e.pos[1]);
        const duplicate = e.code === 'DUPLICATE_KEY';
        return {
          code: duplicate ? 'duplicate_key' : 'yaml_syntax',
          message: duplicate ? duplicateMessage(text, e.pos) : `YAML syntax error: ${firstLine(e.message)}${syntaxHint(text, e.pos[0], e.message)}`,
          pointer: e.code === 'MULTIPLE_DOCS' ? '' : map.pointerAt(e.pos[0], duplicate),
          line,
          column,
          endLine: end.line,
          endColumn: end.column,
        };
      });
      return { ok: false, errors: errors.sort(byPosition), warnings };
    }
    for (const w of doc.warnings) {
      const { line, column } = map.position(w.pos[0]);
      warnings.push({ code: 'yaml_warning', message: firstLine(w.message), pointer: map.pointerAt(w.pos[0]), line, column });
    }
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (e) {
      return { ok: false, errors: [{ code: 'yaml_syntax', message: `YAML error: ${(e as Error).message}`, pointer: '' }], warnings };
    }
  }

  let result;
  try {
    result = validateDetailed(value);
  } catch (e) {
    // A bug must not surface as an exception to callers that rely on "never throws".
    return { ok: false, errors: [{ code: 'internal_error', message: `internal error while validating: ${(e as Error).message}`, pointer: '' }], warnings };
  }
  const errors = result.errors.map((e) => map.locate(e)).sort(byPosition);
  warnings.push(...result.warnings.map((w) => map.locate(w)));
  warnings.sort(byPosition);
  if (errors.length > 0) return { ok: false, errors, warnings };
  return { ok: true, document: value as WorkflowDocument, warnings };
}
