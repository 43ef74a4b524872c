import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import JSZip from 'jszip';
import { DocumentParseError, MIME, SUPPORTED_TYPES, parseDocument, sanitizeFilename, sniffContentType } from './parse.ts';
import type { ParsedDocument } from './types.ts';

const FIXTURES = new URL('../../../tests/fixtures/knowledge/', import.meta.url);
const fixture = (name: string) => new Uint8Array(readFileSync(new URL(name, FIXTURES)));
const bytes = (text: string) => new TextEncoder().encode(text);

/** Sniffs the way the upload route does (first 4 KB, declared type from the client) and parses. */
async function parseUpload(data: Uint8Array, filename: string, declared?: string): Promise<ParsedDocument> {
  return parseDocument(data, { contentType: sniffContentType(data.subarray(0, 4096), filename, declared), filename });
}

async function parseError(promise: Promise<unknown>): Promise<DocumentParseError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(DocumentParseError);
    return error as DocumentParseError;
  }
  throw new Error('expected parsing to fail');
}

const allText = (doc: ParsedDocument) => doc.sections.map((section) => section.text).join('\n\n');

describe('every fixture type parses into the right sections', () => {
  it('a plain-text file loses its BOM and CRLFs but keeps its paragraphs and unicode', async () => {
    const doc = await parseUpload(fixture('notes.txt'), 'notes.txt', 'text/plain');
    expect(doc.pageCount).toBe(1);
    expect(doc.sections).toHaveLength(1);
    const text = doc.sections[0]!.text;
    expect(text.startsWith('Field notes from the Okavango hydrology survey')).toBe(true);
    expect(text).not.toContain('\r');
    expect(text).not.toContain('\uFEFF');
    expect(text).toContain('The piezometer array near Maun recorded a groundwater rise of 37 centimetres');
    expect(text).toContain('café, naïve, Zürich, 東京');
    expect(text.split('\n\n')).toHaveLength(4);
    expect(doc.sections[0]!.heading).toBeUndefined();
  });

  it('markdown is split at ATX headings with the heading path kept, ignoring # inside code fences', async () => {
    const doc = await parseUpload(fixture('guide.md'), 'guide.md');
    expect(doc.title).toBe('Cryostat Maintenance Guide');
    expect(doc.sections.map((section) => section.heading)).toEqual([
      'Cryostat Maintenance Guide',
      'Cryostat Maintenance Guide > Defrosting',
      'Cryostat Maintenance Guide > Defrosting > Ice Removal',
      'Cryostat Maintenance Guide > Blade Handling',
    ]);
    const [intro, defrosting, ice, blades] = doc.sections;
    expect(intro!.text).toContain('Leica cryostat in room B-114');
    expect(defrosting!.text.startsWith('Defrosting\n\n')).toBe(true);
    expect(defrosting!.text).toContain('Ottoline Vasquez');
    expect(ice!.text).toContain('beechwood scraper');
    expect(ice!.text).toContain('# this line is inside a code fence and is not a heading');
    // The closing "##" of an ATX heading is not part of its text.
    expect(blades!.text.startsWith('Blade Handling\n\n')).toBe(true);
    expect(blades!.text).toContain('Discard microtome blades after 400 sections');
  });

  it('markdown text before the first heading is a section without a heading; heading-only sections are dropped', async () => {
    const doc = await parseDocument(bytes('Preamble line.\n\n# Empty\n## Filled\nBody text.\n#hashtag is not a heading\n'), {
      contentType: MIME.markdown,
      filename: 'x.md',
    });
    expect(doc.sections).toEqual([
      { text: 'Preamble line.' },
      { text: 'Filled\n\nBody text.\n#hashtag is not a heading', heading: 'Empty > Filled' },
    ]);
  });

  it('HTML drops script/style/nav/noscript, splits at h1–h6 and takes the <title>', async () => {
    const doc = await parseUpload(fixture('page.html'), 'page.html', 'text/html');
    expect(doc.title).toBe('Spectrometer Calibration Notes');
    const text = allText(doc);
    for (const marker of ['SCRIPT_NOISE_MARKER', 'STYLE_NOISE_MARKER', 'NAV_NOISE_MARKER', 'NOSCRIPT_NOISE_MARKER', 'trackingNoise', 'font-family']) {
      expect(text).not.toContain(marker);
    }
    expect(doc.sections.map((section) => section.heading)).toEqual([
      'Spectrometer Calibration',
      'Spectrometer Calibration > Laser Safety',
      'Spectrometer Calibration > Troubleshooting',
    ]);
    expect(doc.sections[0]!.text).toBe(
      'Spectrometer Calibration\n\nCalibrate the Raman spectrometer with a silicon wafer peak at 520.7 wavenumbers.\n\n' +
        'Record the dark current before every session & after lamp changes.',
    );
    expect(doc.sections[1]!.text).toContain('goggles rated OD6 in the quokka laboratory.\n\nNever bypass the interlock.\nLog every alignment');
    expect(doc.sections[2]!.text).toContain('Symptom | Fix\nCosmic ray spikes | Enable the despiking filter');
  });

  it('a PDF gives one section per page with its page number', async () => {
    const data = fixture('report.pdf');
    const size = data.byteLength;
    const doc = await parseUpload(data, 'report.pdf', 'application/pdf');
    expect(data.byteLength).toBe(size); // pdf.js must not detach the caller's buffer
    expect(doc.pageCount).toBe(3);
    expect(doc.title).toBe('Annual Regeneration Report');
    expect(doc.sections.map((section) => section.page)).toEqual([1, 2, 3]);
    expect(doc.sections[0]!.text).toContain('axolotl limb study funded by the Halvorsen Foundation');
    expect(doc.sections[1]!.text).toContain('The zebrafish regeneration assay ran for 14 days.');
    expect(doc.sections[2]!.text).toContain('planarian fragments regrew in 9 days at 18 degrees Celsius');
    expect(doc.sections[0]!.text).not.toContain('zebrafish');
    expect(doc.sections.every((section) => section.heading === undefined)).toBe(true);
  });

  it('a .docx keeps its Heading 1/Heading 2 structure', async () => {
    const doc = await parseUpload(fixture('memo.docx'), 'memo.docx', 'application/octet-stream');
    expect(doc.title).toBe('Quarterly Memo on Bioreactor Scaling');
    expect(doc.sections.map((section) => section.heading)).toEqual([
      'Quarterly Memo on Bioreactor Scaling',
      'Quarterly Memo on Bioreactor Scaling > Contamination Incident',
      'Quarterly Memo on Bioreactor Scaling > Next Steps',
      'Budget and Staffing',
    ]);
    expect(doc.sections[1]!.text).toBe(
      'Contamination Incident\n\nA Mycoplasma contamination was traced to the glovebox gasket on 3 March.\n\n' +
        'All affected cultures were autoclaved and the incubator was fumigated.',
    );
    expect(doc.sections[2]!.text).toContain('Tromsø supplier Nordlys Labware');
  });

  it('a CSV becomes row groups that each start with the header line', async () => {
    const doc = await parseUpload(fixture('table.csv'), 'table.csv', 'text/csv');
    expect(doc.sections.length).toBeGreaterThanOrEqual(2);
    const header = 'sample_id,species,tissue,regrowth_days,notes';
    const rows: string[] = [];
    for (const section of doc.sections) {
      expect(section.text.startsWith(`${header}\n`)).toBe(true);
      rows.push(...section.text.slice(header.length + 1).split(/\n(?=S-\d{3},)/));
    }
    expect(rows).toHaveLength(40);
    expect(rows.map((row) => row.slice(0, 5))).toEqual(Array.from({ length: 40 }, (_, i) => `S-${String(i + 1).padStart(3, '0')}`));
    expect(rows).toContain('S-017,Ambystoma mexicanum,tail,28,"regrew with a bifurcated tip, unusual"');
    // A quoted field with a line break stays in one row (and one section).
    expect(rows).toContain('S-031,Danio rerio,caudal fin,11,"imaged twice:\nmorning and evening"');
  });

  it('a JSON array of objects gives one pretty-printed section per element', async () => {
    const doc = await parseUpload(fixture('records.json'), 'records.json', 'application/json');
    expect(doc.sections).toHaveLength(3);
    const records = doc.sections.map((section) => JSON.parse(section.text) as { id: string; note: string });
    expect(records.map((record) => record.id)).toEqual(['REC-001', 'REC-002', 'REC-003']);
    expect(records[1]!.note).toContain('vitreous ice thinner than 30 nanometres');
    expect(doc.sections[0]!.text).toContain('\n  "instrument": "Orbitrap Exploris 480"');
  });

  it('a JSON object (not an array of objects) is one section', async () => {
    const doc = await parseDocument(bytes('{"a":1,"b":[1,2]}'), { contentType: MIME.json, filename: 'x.json' });
    expect(doc.sections).toEqual([{ text: JSON.stringify({ a: 1, b: [1, 2] }, null, 2) }]);
  });
});

describe('documents that cannot be indexed fail with a stable code', () => {
  it('a truncated PDF is corrupt_file', async () => {
    const error = await parseError(parseUpload(fixture('corrupt.pdf'), 'corrupt.pdf'));
    expect(error.code).toBe('corrupt_file');
    expect(error.message).toMatch(/^The PDF could not be read: /);
  });

  it('a password-protected PDF is corrupt_file and says so', async () => {
    const error = await parseError(parseUpload(fixture('encrypted.pdf'), 'encrypted.pdf'));
    expect(error.code).toBe('corrupt_file');
    expect(error.message).toBe('The PDF could not be read: it is password-protected');
  });

  it('a .docx that is a broken zip is corrupt_file', async () => {
    expect(sniffContentType(fixture('corrupt.docx'), 'corrupt.docx')).toBe(MIME.docx);
    const error = await parseError(parseUpload(fixture('corrupt.docx'), 'corrupt.docx'));
    expect(error.code).toBe('corrupt_file');
    expect(error.message).toMatch(/^The Word document could not be read: /);
  });

  it('a valid zip without a Word document inside is corrupt_file when named .docx', async () => {
    const zip = new JSZip();
    zip.file('word/readme.txt', 'not a document');
    const data = await zip.generateAsync({ type: 'uint8array' });
    expect((await parseError(parseUpload(data, 'fake.docx'))).code).toBe('corrupt_file');
  });

  it('binary data is unsupported_type', async () => {
    expect(sniffContentType(fixture('binary.bin'), 'binary.bin')).toBe(MIME.binary);
    const error = await parseError(parseUpload(fixture('binary.bin'), 'binary.bin'));
    expect(error.code).toBe('unsupported_type');
    expect(error.message).toContain('"binary.bin" is not a supported document');
  });

  it('a type outside SUPPORTED_TYPES is unsupported_type, whatever the bytes', async () => {
    for (const contentType of [MIME.zip, MIME.binary, 'image/png', '']) {
      expect((await parseError(parseDocument(bytes('hello'), { contentType, filename: 'x' }))).code).toBe('unsupported_type');
    }
  });

  it('an empty file, whitespace, an empty JSON array and script-only HTML are empty_document', async () => {
    expect((await parseError(parseUpload(fixture('empty.txt'), 'empty.txt'))).code).toBe('empty_document');
    expect((await parseError(parseUpload(bytes('\uFEFF  \r\n\t\n  '), 'blank.txt'))).code).toBe('empty_document');
    expect((await parseError(parseUpload(bytes('[]'), 'none.json'))).code).toBe('empty_document');
    const html = '<!doctype html><html><head><title>T</title></head><body><script>x()</script><nav>menu</nav></body></html>';
    expect((await parseError(parseUpload(bytes(html), 'page.html'))).code).toBe('empty_document');
  });

  it('text that is not valid UTF-8 is corrupt_file, as is JSON that does not parse', async () => {
    const latin1 = Uint8Array.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]); // "café ok" in Latin-1
    const error = await parseError(parseDocument(latin1, { contentType: MIME.text, filename: 'x.txt' }));
    expect(error.code).toBe('corrupt_file');
    expect(error.message).toBe('The text file could not be read: it is not valid UTF-8 text');
    const json = await parseError(parseDocument(bytes('{"a": '), { contentType: MIME.json, filename: 'x.json' }));
    expect(json.code).toBe('corrupt_file');
    expect(json.message).toMatch(/^The JSON file could not be parsed: /);
  });

  it('a file over the byte limit is too_large', async () => {
    const error = await parseError(parseDocument(bytes('x'.repeat(2048)), { contentType: MIME.text, filename: 'big.txt', maxBytes: 1024 }));
    expect(error.code).toBe('too_large');
    expect(error.message).toContain('"big.txt" is too large');
  });

  it('DocumentParseError is an Error with a name, a code and the cause', async () => {
    const error = await parseError(parseUpload(fixture('corrupt.pdf'), 'corrupt.pdf'));
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('DocumentParseError');
    expect(error.cause).toBeDefined();
  });

  it('UTF-16 text with a BOM (Excel "Unicode text") is decoded', async () => {
    const utf16 = Uint8Array.from([0xff, 0xfe, ...Array.from('a,b\n1,2').flatMap((ch) => [ch.charCodeAt(0), 0])]);
    expect(sniffContentType(utf16, 'export.csv')).toBe(MIME.csv);
    const doc = await parseUpload(utf16, 'export.csv');
    expect(doc.sections).toEqual([{ text: 'a,b\n1,2' }]);
  });
});

describe('sniffContentType trusts the bytes over the name and the declared type', () => {
  it('lists exactly the supported MIME types', () => {
    expect([...SUPPORTED_TYPES].sort()).toEqual(
      [
        'text/plain',
        'text/markdown',
        'text/html',
        'application/pdf',
        'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        'text/csv',
        'application/json',
      ].sort(),
    );
  });

  it('a PDF declared as text/plain and named .txt is a PDF', () => {
    expect(sniffContentType(fixture('report.pdf'), 'report.txt', 'text/plain')).toBe(MIME.pdf);
    expect(sniffContentType(bytes('\uFEFF\n%PDF-1.4\n'), 'x', 'text/plain')).toBe(MIME.pdf);
  });

  it('an executable named .txt is application/octet-stream', () => {
    const exe = Uint8Array.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00]);
    expect(sniffContentType(exe, 'readme.txt', 'text/plain')).toBe(MIME.binary);
    expect(sniffContentType(Uint8Array.from([0xc3, 0x28, 0x41, 0x42]), 'x.txt')).toBe(MIME.binary); // invalid UTF-8
    expect(sniffContentType(Uint8Array.from([1, 2, 3, 4, 5, 6, 65, 66, 67, 68]), 'x.txt')).toBe(MIME.binary); // mostly control bytes
  });

  it('HTML is recognised without an extension, after a BOM, whitespace or comments', () => {
    expect(sniffContentType(bytes('<!DOCTYPE html><html><body>x</body></html>'), 'download')).toBe(MIME.html);
    expect(sniffContentType(bytes('\uFEFF\n  <!-- saved page --><html lang="en">'), 'page', 'text/plain')).toBe(MIME.html);
    expect(sniffContentType(bytes('<?xml version="1.0"?>\n<!doctype html>'), 'page')).toBe(MIME.html);
    expect(sniffContentType(bytes('plain words'), 'index.htm')).toBe(MIME.html);
    // A declared text/html is not enough on its own.
    expect(sniffContentType(bytes('just words, no markup'), 'notes', 'text/html')).toBe(MIME.text);
  });

  it('text with a BOM is text/plain; a head cut inside a multi-byte character is still text', () => {
    expect(sniffContentType(bytes('\uFEFFhello world'), 'notes.txt')).toBe(MIME.text);
    const cut = bytes('naïve 東京').subarray(0, 10); // ends inside 東
    expect(sniffContentType(cut, 'notes')).toBe(MIME.text);
  });

  it('docx by name or by its word/ parts; other zips are application/zip', async () => {
    const memo = fixture('memo.docx');
    expect(sniffContentType(memo, 'memo.docx')).toBe(MIME.docx);
    expect(sniffContentType(memo, 'upload.bin', 'application/octet-stream')).toBe(MIME.docx);
    const zip = new JSZip();
    zip.file('xl/workbook.xml', '<workbook/>');
    const xlsxLike = await zip.generateAsync({ type: 'uint8array' });
    expect(sniffContentType(xlsxLike, 'sheet.xlsx')).toBe(MIME.zip);
    // A .docx name on bytes that are not a zip does not make them a docx.
    expect(sniffContentType(bytes('plain text'), 'memo.docx')).toBe(MIME.text);
  });

  it('json, csv and markdown by extension; json also by a declared type and a leading brace', () => {
    expect(sniffContentType(bytes('[1,2]'), 'data.json')).toBe(MIME.json);
    expect(sniffContentType(bytes('  {"a":1}'), 'payload', 'application/json; charset=utf-8')).toBe(MIME.json);
    expect(sniffContentType(bytes('not json'), 'payload', 'application/json')).toBe(MIME.text);
    expect(sniffContentType(bytes('{"a":1}'), 'payload')).toBe(MIME.text);
    expect(sniffContentType(bytes('a,b\n1,2'), 'data.CSV')).toBe(MIME.csv);
    expect(sniffContentType(bytes('# Title'), 'README.md')).toBe(MIME.markdown);
    expect(sniffContentType(bytes('# Title'), 'notes.markdown')).toBe(MIME.markdown);
    expect(sniffContentType(bytes('# Title'), 'README', 'text/markdown')).toBe(MIME.markdown);
    expect(sniffContentType(bytes('# Title'), 'README')).toBe(MIME.text);
    expect(sniffContentType(bytes('{\\rtf1\\ansi hello}'), 'letter.txt')).toBe(MIME.rtf);
  });

  it('identifies every fixture', () => {
    const expected: Record<string, string> = {
      'notes.txt': MIME.text,
      'guide.md': MIME.markdown,
      'page.html': MIME.html,
      'report.pdf': MIME.pdf,
      'memo.docx': MIME.docx,
      'table.csv': MIME.csv,
      'records.json': MIME.json,
      'corrupt.pdf': MIME.pdf,
      'corrupt.docx': MIME.docx,
      'encrypted.pdf': MIME.pdf,
      'binary.bin': MIME.binary,
      'empty.txt': MIME.text,
    };
    for (const [name, type] of Object.entries(expected)) expect([name, sniffContentType(fixture(name), name)]).toEqual([name, type]);
  });
});

describe('sanitizeFilename', () => {
  it('keeps only the last path segment, for / and \\', () => {
    expect(sanitizeFilename('../../etc/passwd')).toBe('passwd');
    expect(sanitizeFilename('C:\\x\\y.pdf')).toBe('y.pdf');
    expect(sanitizeFilename('a/b\\c/report final.docx')).toBe('report final.docx');
    expect(sanitizeFilename('reports/')).toBe('reports');
    expect(sanitizeFilename('../..')).toBe('document');
  });

  it('removes control characters, NUL and bidi overrides, and collapses whitespace', () => {
    expect(sanitizeFilename('evil\u0000name\u0007.pdf')).toBe('evilname.pdf');
    expect(sanitizeFilename('  quarterly\t\n  report   v2 .pdf  ')).toBe('quarterly report v2 .pdf');
    expect(sanitizeFilename('invoice\u202Efdp.exe')).toBe('invoicefdp.exe');
    expect(sanitizeFilename('a\u0085b\u009f.txt')).toBe('ab.txt');
  });

  it('strips leading dots (no hidden files) and trailing dots', () => {
    expect(sanitizeFilename('.htaccess')).toBe('htaccess');
    expect(sanitizeFilename('...secret.txt')).toBe('secret.txt');
    expect(sanitizeFilename('notes.txt...')).toBe('notes.txt');
  });

  it('limits names to 200 characters, keeping the extension', () => {
    const long = sanitizeFilename(`${'a'.repeat(500)}.pdf`);
    expect(long).toHaveLength(200);
    expect(long.endsWith('aaa.pdf')).toBe(true);
    const noExt = sanitizeFilename('b'.repeat(500));
    expect(noExt).toBe('b'.repeat(200));
    // Code points, not UTF-16 units: an emoji is never cut in half.
    const emoji = sanitizeFilename(`${'😀'.repeat(300)}.md`);
    expect(Array.from(emoji)).toHaveLength(200);
    expect(emoji.endsWith('😀.md')).toBe(true);
    expect(/[\uD800-\uDFFF]/u.test(emoji)).toBe(false);
  });

  it('is never empty, and keeps unicode in NFC', () => {
    expect(sanitizeFilename('')).toBe('document');
    expect(sanitizeFilename('   ')).toBe('document');
    expect(sanitizeFilename('\u0000\u0001')).toBe('document');
    expect(sanitizeFilename('...')).toBe('document');
    const decomposed = 'Tromso\u0308-re\u0301sume\u0301.pdf';
    expect(sanitizeFilename(decomposed)).toBe('Tromsö-résumé.pdf'.normalize('NFC'));
    expect(sanitizeFilename('東京 レポート.pdf')).toBe('東京 レポート.pdf');
  });
});
