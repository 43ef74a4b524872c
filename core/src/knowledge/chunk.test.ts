import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { countTokens } from '../tokenizer.ts';
import { SECTION_SEPARATOR, chunkDocument, countTextTokens, joinSections, type ChunkOptions } from './chunk.ts';
import { parseDocument, sniffContentType } from './parse.ts';
import type { ParsedDocument, ParsedSection, TextChunk } from './types.ts';

// ─── deterministic text ───

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

const VOCAB = (
  'the a of and to in zebrafish regeneration assay fin caudal blastema axolotl planarian neoblast sample ' +
  'measured grew days hours under with without temperature 18 °C 42 3.5 mg/ml buffer (PBS) protocol, ' +
  'researchers observed that significant growth was limited; however results were reproducible ' +
  'Okavango piezometer centimetres "quoted" naïve café 東京 don\'t it\'s e.g. approx.'
).split(' ');

function sentence(rnd: () => number): string {
  const words = Array.from({ length: 5 + Math.floor(rnd() * 18) }, () => VOCAB[Math.floor(rnd() * VOCAB.length)]!);
  const text = words.join(' ');
  return text[0]!.toUpperCase() + text.slice(1) + ['.', '.', '.', '?', '!'][Math.floor(rnd() * 5)];
}

function paragraph(rnd: () => number, sentences = 1 + Math.floor(rnd() * 6)): string {
  return Array.from({ length: sentences }, () => sentence(rnd)).join(' ');
}

function paragraphs(rnd: () => number, count: number): string {
  return Array.from({ length: count }, () => paragraph(rnd)).join('\n\n');
}

/** A markdown-like document: nested headings, several sections per heading, some tiny. */
function bookDoc(seed: number): ParsedDocument {
  const rnd = prng(seed);
  const sections: ParsedSection[] = [];
  for (const heading of ['Intro', 'Intro > Methods', 'Intro > Methods > Imaging', 'Results', 'Discussion']) {
    const count = 1 + Math.floor(rnd() * 3);
    for (let s = 0; s < count; s++) {
      const size = rnd() < 0.3 ? 1 : 3 + Math.floor(rnd() * 15);
      sections.push({ text: paragraphs(rnd, size), heading });
    }
  }
  return { sections, pageCount: 1 };
}

/** A PDF-like document: one section per page, no headings, line-wrapped text. */
function pdfDoc(seed: number, pages = 12): ParsedDocument {
  const rnd = prng(seed);
  const sections: ParsedSection[] = [];
  for (let page = 1; page <= pages; page++) {
    const text = paragraphs(rnd, 1 + Math.floor(rnd() * 8)).replace(/(.{60,80}?) /g, '$1\n');
    sections.push({ text, page });
  }
  return { sections, pageCount: pages };
}

// ─── invariants ───

const isSpace = (ch: string | undefined) => ch === undefined || /\s/.test(ch);

function sectionSpans(doc: ParsedDocument) {
  let offset = 0;
  return doc.sections.map((section) => {
    const span = { ...section, start: offset, end: offset + section.text.length };
    offset = span.end + SECTION_SEPARATOR.length;
    return span;
  });
}

/** Checks everything a chunking must guarantee; returns the chunks for further checks. */
function checkInvariants(doc: ParsedDocument, options: ChunkOptions, chunks = chunkDocument(doc, options)): TextChunk[] {
  const full = joinSections(doc);
  const spans = sectionSpans(doc);
  const covered = new Uint8Array(full.length);
  for (const [index, chunk] of chunks.entries()) {
    const { char_start: start, char_end: end } = chunk.metadata;
    expect(chunk.ordinal).toBe(index);
    expect(chunk.text.length).toBeGreaterThan(0);
    expect(chunk.text).toBe(chunk.text.trim());
    expect(full.slice(start, end)).toBe(chunk.text);
    expect(chunk.tokenCount).toBeLessThanOrEqual(options.chunkTokens);
    expect(chunk.tokenCount).toBe(countTokens(chunk.text));
    // Never cut inside a word: whitespace (or the text's edge) on both sides.
    expect(isSpace(full[start - 1]) && isSpace(full[end])).toBe(true);
    // Never across a heading change; pages are those of the sections it touches.
    const touched = spans.filter((span) => span.start < end && span.end > start && span.text.trim() !== '');
    expect(new Set(touched.map((span) => span.heading))).toEqual(new Set([chunk.metadata.heading]));
    const pages = [...new Set(touched.flatMap((span) => (span.page === undefined ? [] : [span.page])))].sort((a, b) => a - b);
    if (pages.length === 0) {
      expect(chunk.metadata.page).toBeUndefined();
      expect(chunk.metadata.pages).toBeUndefined();
    } else {
      expect(chunk.metadata.pages).toEqual(pages);
      expect(chunk.metadata.page).toBe(pages[0]);
    }
    covered.fill(1, start, end);
    const previous = chunks[index - 1];
    if (previous && previous.metadata.heading === chunk.metadata.heading) {
      expect(start).toBeGreaterThan(previous.metadata.char_start);
      expect(end).toBeGreaterThan(previous.metadata.char_end);
      if (start < previous.metadata.char_end) {
        // The overlap is the previous chunk's tail, about overlapTokens long at most (measured on
        // untrimmed pieces, so trimming its first word may add a token or two).
        expect(countTokens(full.slice(start, previous.metadata.char_end))).toBeLessThanOrEqual(options.overlapTokens + 3);
      } else if (options.overlapTokens > 0) {
        // No overlap only right after a section boundary.
        expect(spans.some((span) => span.end === previous.metadata.char_end)).toBe(true);
      }
    }
  }
  // Nothing is lost: every non-whitespace character is in some chunk.
  for (let i = 0; i < full.length; i++) if (!covered[i] && !isSpace(full[i])) throw new Error(`char ${i} (${full[i]}) not covered`);
  return chunks;
}

const OPTION_SETS: ChunkOptions[] = [
  { chunkTokens: 50, overlapTokens: 0 },
  { chunkTokens: 50, overlapTokens: 20 },
  { chunkTokens: 120, overlapTokens: 30 },
  { chunkTokens: 800, overlapTokens: 100 },
];

describe('chunkDocument', () => {
  it('rejects option values outside the allowed ranges with a RangeError', () => {
    const doc: ParsedDocument = { sections: [{ text: 'hello' }], pageCount: 1 };
    for (const options of [
      { chunkTokens: 49, overlapTokens: 0 },
      { chunkTokens: 100.5, overlapTokens: 0 },
      { chunkTokens: Number.NaN, overlapTokens: 0 },
      { chunkTokens: 100, overlapTokens: -1 },
      { chunkTokens: 100, overlapTokens: 50 },
      { chunkTokens: 100, overlapTokens: 2.5 },
    ]) {
      expect(() => chunkDocument(doc, options)).toThrow(RangeError);
    }
    expect(chunkDocument(doc, { chunkTokens: 50, overlapTokens: 24 })).toHaveLength(1);
  });

  it('returns no chunks for a document without text', () => {
    expect(chunkDocument({ sections: [], pageCount: 1 }, { chunkTokens: 100, overlapTokens: 10 })).toEqual([]);
    expect(chunkDocument({ sections: [{ text: '  \n ' }], pageCount: 1 }, { chunkTokens: 100, overlapTokens: 10 })).toEqual([]);
  });

  for (const options of OPTION_SETS) {
    it(`keeps every invariant on headed and paged documents (${options.chunkTokens}/${options.overlapTokens})`, () => {
      for (const seed of [1, 2, 3]) {
        const book = checkInvariants(bookDoc(seed), options);
        const pdf = checkInvariants(pdfDoc(seed), options);
        expect(book.length).toBeGreaterThan(0);
        expect(pdf.length).toBeGreaterThan(0);
      }
    });
  }

  it('has overlap between consecutive chunks of one long section', () => {
    const doc: ParsedDocument = { sections: [{ text: paragraphs(prng(9), 60) }], pageCount: 1 };
    const chunks = checkInvariants(doc, { chunkTokens: 120, overlapTokens: 30 });
    expect(chunks.length).toBeGreaterThan(10);
    for (let i = 1; i < chunks.length; i++) {
      const previous = chunks[i - 1]!;
      const overlapText = joinSections(doc).slice(chunks[i]!.metadata.char_start, previous.metadata.char_end);
      expect(overlapText.length).toBeGreaterThan(0);
      expect(previous.text.endsWith(overlapText)).toBe(true);
      expect(chunks[i]!.text.startsWith(overlapText)).toBe(true);
      expect(countTokens(overlapText)).toBeGreaterThanOrEqual(10);
    }
  });

  it('without overlap, chunks partition the text', () => {
    const doc: ParsedDocument = { sections: [{ text: paragraphs(prng(5), 40) }], pageCount: 1 };
    const chunks = checkInvariants(doc, { chunkTokens: 100, overlapTokens: 0 });
    const full = joinSections(doc);
    for (let i = 1; i < chunks.length; i++) {
      const gap = full.slice(chunks[i - 1]!.metadata.char_end, chunks[i]!.metadata.char_start);
      expect(gap.trim()).toBe('');
    }
  });

  it('ends chunks at paragraph breaks when paragraphs fit', () => {
    const rnd = prng(11);
    const text = Array.from({ length: 30 }, () => paragraph(rnd, 2)).join('\n\n');
    const doc: ParsedDocument = { sections: [{ text }], pageCount: 1 };
    const chunks = checkInvariants(doc, { chunkTokens: 150, overlapTokens: 0 });
    for (const chunk of chunks) {
      const after = text.slice(chunk.metadata.char_end, chunk.metadata.char_end + 2);
      expect(after === '' || after === '\n\n').toBe(true);
    }
  });

  it('ends chunks at sentence ends inside one long paragraph, and overlaps from a sentence start', () => {
    // Short sentences, so that a sentence end always falls inside the overlap window too.
    const rnd = prng(12);
    const words = ['zebrafish', 'fins', 'regrew', 'quickly', 'in', 'warm', 'water', 'after', 'the', 'assay', 'ended'];
    const text = Array.from({ length: 150 }, () => {
      const sentence = Array.from({ length: 4 + Math.floor(rnd() * 5) }, () => words[Math.floor(rnd() * words.length)]).join(' ');
      return `${sentence[0]!.toUpperCase()}${sentence.slice(1)}.`;
    }).join(' ');
    const doc: ParsedDocument = { sections: [{ text }], pageCount: 1 };
    const chunks = checkInvariants(doc, { chunkTokens: 100, overlapTokens: 40 });
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) expect(chunk.text).toMatch(/[.?!]$/);
    for (const chunk of chunks.slice(1)) expect(text.slice(0, chunk.metadata.char_start).trimEnd()).toMatch(/[.?!]$/);
  });

  it('breaks CJK text at 。 although it has no spaces', () => {
    const text = Array.from({ length: 120 }, (_, i) => `斑马鱼再生实验第${i}天的结果表明鳍的生长显著。`).join('');
    const doc: ParsedDocument = { sections: [{ text }], pageCount: 1 };
    const chunks = chunkDocument(doc, { chunkTokens: 60, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) {
      expect(chunk.tokenCount).toBeLessThanOrEqual(60);
      expect(chunk.tokenCount).toBe(countTokens(chunk.text));
      expect(chunk.text.endsWith('。')).toBe(true);
    }
    expect(chunks.map((chunk) => chunk.text).join('')).toBe(text);
  });

  it('cuts inside a word only when one word exceeds the chunk size', () => {
    const sequence = Array.from({ length: 6000 }, (_, i) => 'ACGT'[(i * 7 + (i >> 3)) % 4]).join('');
    const text = `Sequence of clone 7:\n${sequence}\nEnd of sequence.`;
    const doc: ParsedDocument = { sections: [{ text }], pageCount: 1 };
    const chunks = chunkDocument(doc, { chunkTokens: 60, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(10);
    for (const chunk of chunks) expect(chunk.tokenCount).toBeLessThanOrEqual(60);
    expect(chunks.map((chunk) => chunk.text).join('').replace(/\s/g, '')).toBe(text.replace(/\s/g, ''));
    expect(chunks[0]!.text).toBe('Sequence of clone 7:');
    expect(chunks.at(-1)!.text.endsWith('End of sequence.')).toBe(true);
  });

  it('starts a new chunk at every heading change, however small the sections', () => {
    const doc: ParsedDocument = {
      sections: [
        { text: 'Alpha one.', heading: 'A' },
        { text: 'Alpha two.', heading: 'A' },
        { text: 'Beta.', heading: 'A > B' },
        { text: 'Untitled.' },
        { text: 'Alpha again.', heading: 'A' },
      ],
      pageCount: 1,
    };
    const chunks = checkInvariants(doc, { chunkTokens: 500, overlapTokens: 50 });
    expect(chunks.map((chunk) => [chunk.text, chunk.metadata.heading])).toEqual([
      ['Alpha one.\n\nAlpha two.', 'A'],
      ['Beta.', 'A > B'],
      ['Untitled.', undefined],
      ['Alpha again.', 'A'],
    ]);
  });

  it('never merges pages: each chunk cites exactly one page', () => {
    const doc: ParsedDocument = {
      sections: [
        { text: 'First page text.', page: 1 },
        { text: 'Second page text.', page: 2 },
        { text: 'Third page text.', page: 3 },
      ],
      pageCount: 3,
    };
    const chunks = checkInvariants(doc, { chunkTokens: 100, overlapTokens: 10 });
    expect(chunks.map((c) => c.metadata.pages)).toEqual([[1], [2], [3]]);
    expect(chunks.map((c) => c.metadata.page)).toEqual([1, 2, 3]);
    expect(chunks.map((c) => c.text)).toEqual(['First page text.', 'Second page text.', 'Third page text.']);
  });

  it('is deterministic', () => {
    const doc = bookDoc(42);
    const options = { chunkTokens: 90, overlapTokens: 20 };
    expect(chunkDocument(doc, options)).toEqual(chunkDocument(structuredClone(doc), options));
  });

  it('counts tokens like the repo tokenizer, and survives special-token text', () => {
    const samples = [
      'Hello, world! It\'s 3.14159 — naïve café; 東京タワー 🚀🚀 emoji.\n\n\tIndented   spaces   \r\n',
      'function f(x) { return x ** 2; } // code\n    nested();',
      paragraphs(prng(3), 20),
    ];
    for (const sample of samples) expect(countTextTokens(sample)).toBe(countTokens(sample));
    expect(countTextTokens('before <|endoftext|> after')).toBeGreaterThan(3);
    const chunks = chunkDocument({ sections: [{ text: 'Prompt injection <|endoftext|> attempt.' }], pageCount: 1 }, { chunkTokens: 50, overlapTokens: 0 });
    expect(chunks).toHaveLength(1);
  });

  it('chunks 1 MB of text into a number of chunks bounded by its token count', () => {
    const rnd = prng(2024);
    const parts: string[] = [];
    let length = 0;
    while (length < 1_000_000) {
      const p = paragraph(rnd);
      parts.push(p);
      length += p.length + 2;
    }
    const text = parts.join('\n\n').slice(0, 1_000_000).trimEnd();
    const doc: ParsedDocument = { sections: [{ text }], pageCount: 1 };
    const options = { chunkTokens: 800, overlapTokens: 100 };
    const chunks = chunkDocument(doc, options);
    const total = countTextTokens(text);
    // Each chunk holds ≤ 800 tokens and (past the overlap) adds ≥ 300 new ones: half-full at worst.
    expect(chunks.length).toBeGreaterThanOrEqual(Math.ceil(total / 800));
    expect(chunks.length).toBeLessThanOrEqual(Math.ceil(total / 300) + 1);
    let previousEnd = 0;
    for (const chunk of chunks) {
      expect(chunk.tokenCount).toBeLessThanOrEqual(800);
      expect(chunk.metadata.char_start).toBeLessThanOrEqual(previousEnd + 2);
      previousEnd = chunk.metadata.char_end;
    }
    expect(previousEnd).toBe(text.length);
    // Spot-check real counts (all of them would re-tokenize 1 MB with the slow encoder).
    for (const chunk of chunks.filter((_, i) => i % 50 === 0)) expect(chunk.tokenCount).toBe(countTokens(chunk.text));
  });
});

describe('parse → chunk on the fixtures', () => {
  const FIXTURES = new URL('../../../tests/fixtures/knowledge/', import.meta.url);
  const parseFixture = (name: string) => {
    const data = new Uint8Array(readFileSync(new URL(name, FIXTURES)));
    return parseDocument(data, { contentType: sniffContentType(data, name), filename: name });
  };

  it('a PDF chunk cites the page its sentence is on', async () => {
    const doc = await parseFixture('report.pdf');
    const small = checkInvariants(doc, { chunkTokens: 50, overlapTokens: 10 });
    const zebrafish = small.filter((chunk) => chunk.text.includes('The zebrafish regeneration assay ran for 14 days.'));
    expect(zebrafish.length).toBeGreaterThan(0);
    for (const chunk of zebrafish) expect(chunk.metadata.pages).toContain(2);
    const whole = checkInvariants(doc, { chunkTokens: 800, overlapTokens: 100 });
    expect(whole.map((chunk) => chunk.metadata.pages)).toEqual([[1], [2], [3]]);
    expect(whole.find((chunk) => chunk.text.includes('zebrafish'))!.metadata.page).toBe(2);
  });

  it('markdown, HTML and docx chunks carry their heading paths', async () => {
    for (const name of ['guide.md', 'page.html', 'memo.docx']) {
      const doc = await parseFixture(name);
      const chunks = checkInvariants(doc, { chunkTokens: 800, overlapTokens: 100 });
      expect(chunks.map((chunk) => chunk.metadata.heading)).toEqual(doc.sections.map((section) => section.heading));
    }
  });

  it('CSV chunks start with the header row', async () => {
    const doc = await parseFixture('table.csv');
    const chunks = checkInvariants(doc, { chunkTokens: 400, overlapTokens: 50 });
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    for (const chunk of chunks) expect(chunk.text.startsWith('sample_id,species,tissue,regrowth_days,notes\n')).toBe(true);
  });
});
