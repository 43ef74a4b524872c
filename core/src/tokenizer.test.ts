// The runtime counter (its own rank table and byte-pair merge) must count exactly what
// js-tiktoken's o200k_base encoder does: on fixed texts of every script and shape, on the fixture
// corpora, and on random strings.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';
import { describe, expect, it } from 'vitest';
import { countChatPromptTokens, countTokens } from './tokenizer.ts';

const reference = new Tiktoken(o200k_base);
/** js-tiktoken's count, special-token strings as plain text (what countTokens does). */
const expected = (text: string) => reference.encode(text, [], []).length;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function textFiles(dir: string, limit: number): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (out.length >= limit) return;
      const file = path.join(d, name);
      if (statSync(file).isDirectory()) walk(file);
      else if (/\.jsonl$/.test(name)) out.push(...readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(0, limit - out.length));
      else if (/\.(md|txt|json|csv|html|ya?ml)$/.test(name) && statSync(file).size < 2_000_000) out.push(readFileSync(file, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

describe('countTokens (o200k_base)', () => {
  it('counts exactly as js-tiktoken on texts of every script and shape', () => {
    const samples = [
      '',
      ' ',
      'a',
      'hello world',
      'Hello, World! 12345 67890 1234567',
      '  leading and trailing spaces   \n\n\t tabs\r\n',
      'Summarise the 2023 results on 量子纠错 (quantum error correction) in three bullet points, please.',
      'Привет, как дела? Ελληνικά κείμενα. עברית. العربية. हिन्दी. 日本語のテキスト。한국어 텍스트.',
      'emoji 👩‍🔬🧪🔬 flags 🇫🇷🇯🇵 skin 👋🏽 and ZWJ 👨‍👩‍👧‍👦',
      'function f(x) { return x ** 2 + 1; } // code\nconst y = [1, 2, 3].map((n) => n * 2);',
      'ATGCGTACGTTAGCTAGCTAGCTGATCGATCGTAGCTAGCTAGCTAGCTAGCTGACTGATCGATCGATCGTAGCTAGCTAGCTAGCTAGCTAGCTAG',
      'x'.repeat(500),
      '<|endoftext|> special strings count as text <|fim_prefix|>',
      "don't won't it's we'll they've I'M YOU'RE",
      'ﬁ ligature, combining é (e\u0301), NBSP\u00a0here, lone surrogate \ud800 end',
      'https://example.org/path?query=1&b=two#frag user@example.com',
    ];
    for (const text of samples) expect(countTokens(text), JSON.stringify(text.slice(0, 40))).toBe(expected(text));
  });

  it('counts exactly as js-tiktoken on the fixture corpora', () => {
    const files = [...textFiles(path.join(ROOT, 'tests', 'fixtures'), 400), ...textFiles(path.join(ROOT, 'examples'), 50)];
    expect(files.length).toBeGreaterThan(20);
    let total = 0;
    for (const text of files) {
      const want = expected(text);
      expect(countTokens(text)).toBe(want);
      total += want;
    }
    expect(total).toBeGreaterThan(10_000);
  });

  it('counts exactly as js-tiktoken on random strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 })), (text) => {
        expect(countTokens(text)).toBe(expected(text));
      }),
      { numRuns: 500 },
    );
  });

  it('chat prompts add 3 per message, role, name (+1) and 3 to prime the reply', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'What is 17 × 23?' }], name: 'alice' },
    ];
    expect(countChatPromptTokens(messages)).toBe(3 + (3 + expected('system') + expected('Be brief.')) + (3 + expected('user') + expected('What is 17 × 23?') + 1 + expected('alice')));
    expect(countChatPromptTokens([])).toBe(3);
  });

  it('keeps its rank table out of the collector: a few typed arrays, not 200k heap objects', () => {
    // In a fresh process (this one has built the table already): the JS heap a full collection
    // must mark grows by well under a megabyte when the table is built (the Map of strings it
    // replaced: 12.6 MB), while the table's bytes sit in array buffers. V8 frees dead array
    // buffers' memory on a background thread after a collection, so each reading first lets that
    // settle (a reading right after gc() once counted the import's garbage as still allocated).
    const script = `
      const { warmTokenizer, countTokens } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'core/src/tokenizer.ts')).href)});
      const settle = async () => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 30)); } };
      await settle(); const heap = process.memoryUsage().heapUsed, buffers = process.memoryUsage().arrayBuffers;
      warmTokenizer();
      const count = countTokens('hello world');
      await settle();
      console.log(JSON.stringify({ heap: process.memoryUsage().heapUsed - heap, buffers: process.memoryUsage().arrayBuffers - buffers, count }));`;
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const grew = JSON.parse(out.trim().split('\n').pop()!) as { heap: number; buffers: number; count: number };
    expect(grew.count).toBe(2);
    expect(grew.heap).toBeLessThan(1_000_000);
    expect(grew.buffers).toBeGreaterThan(2_000_000);
  });
});
