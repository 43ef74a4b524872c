// Turns an uploaded file into ParsedDocument sections (text + page/heading), the first step of the
// knowledge pipeline. The content type comes from the bytes (sniffContentType), never from what the
// client declared. Heavy parsers (pdf.js via unpdf, mammoth) are imported lazily so that importing
// this module for sniffing or filename checks stays cheap.
import { parse as parseHtmlTree, HTMLElement, TextNode, type Node as HtmlNode } from 'node-html-parser';
import type { ParsedDocument, ParsedSection } from './types.ts';

export type DocumentParseErrorCode = 'unsupported_type' | 'corrupt_file' | 'empty_document' | 'too_large';

export class DocumentParseError extends Error {
  readonly code: DocumentParseErrorCode;

  constructor(code: DocumentParseErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DocumentParseError';
    this.code = code;
  }
}

export const MIME = {
  text: 'text/plain',
  markdown: 'text/markdown',
  html: 'text/html',
  pdf: 'application/pdf',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  csv: 'text/csv',
  json: 'application/json',
  zip: 'application/zip',
  rtf: 'application/rtf',
  binary: 'application/octet-stream',
} as const;

export const SUPPORTED_TYPES: readonly string[] = [
  MIME.text,
  MIME.markdown,
  MIME.html,
  MIME.pdf,
  MIME.docx,
  MIME.csv,
  MIME.json,
];

/** Defaults for parseDocument's limits; the upload route may enforce a smaller byte limit first. */
export const PARSE_LIMITS = {
  maxBytes: 50 * 1024 * 1024,
  /** Extracted text beyond this is refused: it guards against zip/XML bombs inflating a small upload. */
  maxTextChars: 20_000_000,
} as const;

// ───────────────────────────── sniffing ─────────────────────────────

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

function startsWithBytes(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function asciiIncludes(bytes: Uint8Array, needle: string): boolean {
  // latin1 maps bytes 1:1 to code units, so ASCII needles can be searched in binary data.
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1').includes(needle);
}

/** The head may end mid-character; drop an incomplete trailing UTF-8 sequence before validating. */
function trimIncompleteUtf8(bytes: Uint8Array): Uint8Array {
  let i = bytes.length - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 3 && (bytes[i]! & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i < 0) return bytes;
  const lead = bytes[i]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need > continuation + 1 ? bytes.subarray(0, i) : bytes;
}

/** The head as text, or undefined when it looks binary (NUL, invalid UTF-8, many control bytes). */
function headAsText(head: Uint8Array): string | undefined {
  if (startsWithBytes(head, [0xff, 0xfe]) || startsWithBytes(head, [0xfe, 0xff])) {
    const encoding = head[0] === 0xff ? 'utf-16le' : 'utf-16be';
    const even = head.subarray(0, head.length - (head.length % 2));
    return new TextDecoder(encoding).decode(even);
  }
  if (head.includes(0)) return undefined;
  let text: string;
  try {
    text = utf8Fatal.decode(trimIncompleteUtf8(head));
  } catch {
    return undefined;
  }
  let controls = 0;
  for (const byte of head) {
    if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d && byte !== 0x0c && byte !== 0x1b) || byte === 0x7f) {
      controls++;
    }
  }
  if (head.length > 0 && controls / head.length > 0.1) return undefined;
  return text;
}

function extensionOf(filename: string): string {
  const base = filename.split(/[/\\]/).pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

function normalizeMime(value: string | undefined): string {
  return (value ?? '').split(';')[0]!.trim().toLowerCase();
}

function looksLikeHtml(text: string): boolean {
  // Skip a BOM, whitespace, an XML prolog and leading comments, then look for the document element.
  const rest = text.replace(/^\uFEFF?(?:\s+|<\?xml[^>]*\?>|<!--[\s\S]*?-->)*/, '');
  return /^<(?:!doctype\s+html|html[\s>])/i.test(rest);
}

const SNIFF_BYTES = 64 * 1024;

/**
 * The content type of an upload, from its first bytes (any head length works; 4 KB is plenty) and
 * its name. The declared type only breaks ties between text formats; it never overrides the bytes.
 */
export function sniffContentType(head: Uint8Array, filename: string, declared?: string): string {
  // Callers may pass the whole file; the first 64 KB decide as well as all of it would.
  head = head.subarray(0, SNIFF_BYTES);
  const ext = extensionOf(filename);
  const declaredType = normalizeMime(declared);

  // %PDF- may follow a BOM or whitespace in files written by careless tools.
  let at = startsWithBytes(head, [0xef, 0xbb, 0xbf]) ? 3 : 0;
  while (at < head.length && at < 64 && (head[at] === 0x20 || head[at] === 0x0a || head[at] === 0x0d || head[at] === 0x09)) at++;
  if (startsWithBytes(head, [0x25, 0x50, 0x44, 0x46, 0x2d], at)) return MIME.pdf;

  if (startsWithBytes(head, [0x50, 0x4b, 0x03, 0x04])) {
    // A .docx keeps its parts under word/; xlsx/pptx/odt are zips too but use other folders.
    return ext === 'docx' || asciiIncludes(head, 'word/') ? MIME.docx : MIME.zip;
  }
  if (startsWithBytes(head, [0x7b, 0x5c, 0x72, 0x74, 0x66])) return MIME.rtf; // {\rtf

  const text = headAsText(head);
  if (text === undefined) return MIME.binary;

  if (looksLikeHtml(text) || ext === 'html' || ext === 'htm' || ext === 'xhtml') return MIME.html;
  const firstChar = text.replace(/^\uFEFF/, '').trimStart()[0];
  if (ext === 'json' || ((firstChar === '{' || firstChar === '[') && declaredType.includes('json'))) return MIME.json;
  if (ext === 'csv') return MIME.csv;
  if (ext === 'md' || ext === 'markdown') return MIME.markdown;
  // Between text formats the bytes cannot decide, so a declared markdown/csv is harmless to honour.
  if (ext === '' || ext === 'txt') {
    if (declaredType === MIME.markdown || declaredType === 'text/x-markdown') return MIME.markdown;
    if (declaredType === MIME.csv && ext === '') return MIME.csv;
  }
  return MIME.text;
}

// ───────────────────────────── filenames ─────────────────────────────

const MAX_FILENAME_CHARS = 200;

/**
 * A display/storage-safe file name: last path segment only, no control or bidi-override
 * characters, no leading dots, whitespace collapsed, at most 200 code points with the extension
 * kept, and never empty.
 */
export function sanitizeFilename(name: string): string {
  let s = String(name ?? '').normalize('NFC');
  s = s.replace(/[\t\n\v\f\r]/g, ' ');
  s = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  // Zero-width and bidi controls let "invoice\u202Efdp.exe" display as "invoiceexe.pdf".
  s = s.replace(/[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g, '');
  const segments = s.split(/[/\\]/).map((segment) => segment.trim());
  s = segments.filter((segment) => segment !== '' && segment !== '.' && segment !== '..').at(-1) ?? '';
  s = s.replace(/\s+/g, ' ').replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');

  const chars = Array.from(s);
  if (chars.length > MAX_FILENAME_CHARS) {
    const ext = /\.[^.\s]{1,16}$/u.exec(s)?.[0] ?? '';
    const extChars = Array.from(ext).length;
    const base = chars
      .slice(0, MAX_FILENAME_CHARS - extChars)
      .join('')
      .replace(/[.\s]+$/, '');
    s = base + ext;
  }
  return s === '' ? 'document' : s;
}

// ───────────────────────────── text helpers ─────────────────────────────

/** Decodes text bytes: UTF-8 (BOM optional) or UTF-16 with a BOM; invalid UTF-8 is a corrupt file. */
function decodeText(bytes: Uint8Array, what: string): string {
  try {
    if (startsWithBytes(bytes, [0xff, 0xfe])) return new TextDecoder('utf-16le', { fatal: true }).decode(bytes.subarray(2));
    if (startsWithBytes(bytes, [0xfe, 0xff])) return new TextDecoder('utf-16be', { fatal: true }).decode(bytes.subarray(2));
    // TextDecoder strips a UTF-8 BOM by default.
    return utf8Fatal.decode(bytes);
  } catch (error) {
    throw new DocumentParseError('corrupt_file', `The ${what} could not be read: it is not valid UTF-8 text`, { cause: error });
  }
}

/** Newlines to \n, control characters dropped, trailing spaces and runs of blank lines trimmed. */
function cleanText(text: string): string {
  return text
    .normalize('NFC')
    .replace(/\r\n?/g, '\n')
    .replace(/[\f\v]/g, '\n\n')
    .replace(/^\uFEFF/, '')
    .replace(/[\u0000-\u0008\u000e-\u001f\u007f]/g, '')
    .replace(/[ \t\u00a0]+$/gm, '')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

const collapseWhitespace = (text: string) => text.replace(/[\s\u00a0]+/g, ' ').trim();

/** Keeps the heading path (outermost first) as headings of different levels come and go. */
class HeadingPath {
  private readonly stack: Array<{ level: number; text: string }> = [];

  enter(level: number, text: string): string {
    while (this.stack.length > 0 && this.stack.at(-1)!.level >= level) this.stack.pop();
    this.stack.push({ level, text });
    return this.stack.map((entry) => entry.text).join(' > ');
  }
}

/**
 * Collects sections: each heading starts a new section whose text begins with the heading line, so
 * a chunk taken from its start names its own topic. A section holding only its heading is dropped.
 */
class SectionCollector {
  readonly sections: ParsedSection[] = [];
  private text = '';
  private bodyStart = 0;
  private heading: string | undefined;

  startSection(heading: string | undefined, headingLine: string): void {
    this.finish();
    this.heading = heading;
    this.text = headingLine ? `${headingLine}\n\n` : '';
    this.bodyStart = this.text.length;
  }

  append(text: string): void {
    this.text += text;
  }

  get length(): number {
    return this.text.length;
  }

  finish(): void {
    const body = this.text.slice(this.bodyStart);
    if (cleanText(body) !== '') {
      const section: ParsedSection = { text: cleanText(this.text) };
      if (this.heading !== undefined) section.heading = this.heading;
      this.sections.push(section);
    }
    this.text = '';
    this.bodyStart = 0;
  }
}

// ───────────────────────────── formats ─────────────────────────────

function parsePlainText(bytes: Uint8Array): ParsedDocument {
  const text = cleanText(decodeText(bytes, 'text file'));
  return { sections: text ? [{ text }] : [], pageCount: 1 };
}

const ATX_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

function parseMarkdown(bytes: Uint8Array): ParsedDocument {
  const lines = decodeText(bytes, 'Markdown file').replace(/\r\n?/g, '\n').split('\n');
  const collector = new SectionCollector();
  const path = new HeadingPath();
  let title: string | undefined;
  let fence: string | undefined;
  for (const line of lines) {
    const fenceMatch = FENCE.exec(line);
    if (fence !== undefined) {
      // A fence closes with the same character, at least as long as the opener.
      if (fenceMatch && fenceMatch[1]![0] === fence[0] && fenceMatch[1]!.length >= fence.length && line.trim() === fenceMatch[1]) {
        fence = undefined;
      }
      collector.append(`${line}\n`);
      continue;
    }
    if (fenceMatch) {
      fence = fenceMatch[1];
      collector.append(`${line}\n`);
      continue;
    }
    const heading = ATX_HEADING.exec(line);
    const headingText = heading ? collapseWhitespace(heading[2] ?? '') : '';
    if (heading && headingText) {
      const level = heading[1]!.length;
      if (level === 1 && title === undefined) title = headingText;
      collector.startSection(path.enter(level, headingText), headingText);
      continue;
    }
    collector.append(`${line}\n`);
  }
  collector.finish();
  return withTitle({ sections: collector.sections, pageCount: 1 }, title);
}

// Elements whose content is never document text.
const HTML_SKIP = new Set([
  'script', 'style', 'nav', 'noscript', 'template', 'head', 'svg', 'iframe', 'object', 'embed', 'canvas', 'audio', 'video', 'map',
]);
// Block elements separated by a blank line (paragraph break) …
const HTML_PARAGRAPH = new Set([
  'p', 'div', 'section', 'article', 'main', 'header', 'footer', 'aside', 'blockquote', 'pre', 'table', 'ul', 'ol', 'dl',
  'figure', 'figcaption', 'form', 'fieldset', 'address', 'details', 'summary', 'hr', 'caption', 'center', 'body', 'html',
]);
// … and ones separated by a line break.
const HTML_LINE = new Set(['li', 'tr', 'br', 'dt', 'dd', 'option', 'legend']);
const HTML_CELL = new Set(['td', 'th']);

/** Walks the DOM once, producing text with block structure as newlines and headings as sections. */
class HtmlTextWalker {
  readonly collector = new SectionCollector();
  firstH1: string | undefined;
  private readonly path = new HeadingPath();
  private pendingBreak: 0 | 1 | 2 = 0;
  private pendingSpace = false;
  private lineHasText = false;
  private preDepth = 0;

  walk(node: HtmlNode): void {
    if (node instanceof TextNode) {
      if (this.preDepth > 0) this.appendRaw(node.text);
      else this.appendInline(node.text);
      return;
    }
    if (!(node instanceof HTMLElement)) return; // comments
    const tag = node.tagName?.toLowerCase() ?? '';
    if (HTML_SKIP.has(tag) || node.hasAttribute('hidden') || node.getAttribute('aria-hidden') === 'true') return;
    if (node.getAttribute('role') === 'navigation') return;

    const headingLevel = /^h([1-6])$/.exec(tag)?.[1];
    if (headingLevel) {
      const text = collapseWhitespace(node.text);
      if (text) {
        const level = Number(headingLevel);
        if (level === 1) this.firstH1 ??= text;
        this.collector.startSection(this.path.enter(level, text), text);
        this.pendingBreak = 0;
        this.pendingSpace = false;
        this.lineHasText = false;
        return;
      }
    }

    const blockBreak = HTML_PARAGRAPH.has(tag) ? 2 : HTML_LINE.has(tag) ? 1 : 0;
    if (blockBreak) this.requestBreak(blockBreak);
    if (HTML_CELL.has(tag) && this.lineHasText && this.pendingBreak === 0) {
      this.pendingSpace = false;
      this.collector.append(' | ');
    }
    if (tag === 'pre') this.preDepth++;
    for (const child of node.childNodes) this.walk(child);
    if (tag === 'pre') this.preDepth--;
    if (blockBreak) this.requestBreak(blockBreak);
    if (tag === 'img' && node.getAttribute('alt')) this.appendInline(` ${node.getAttribute('alt')} `);
  }

  finish(): void {
    this.collector.finish();
  }

  private requestBreak(kind: 1 | 2): void {
    if (kind > this.pendingBreak) this.pendingBreak = kind;
    this.pendingSpace = false;
  }

  private flushBreak(): void {
    if (this.pendingBreak !== 0 && this.lineHasText) {
      this.collector.append(this.pendingBreak === 2 ? '\n\n' : '\n');
      this.lineHasText = false;
    }
    this.pendingBreak = 0;
  }

  private appendInline(raw: string): void {
    const collapsed = raw.replace(/[\s\u00a0]+/g, ' ');
    const body = collapsed.trim();
    if (body === '') {
      if (collapsed === ' ') this.pendingSpace = true;
      return;
    }
    this.flushBreak();
    if ((this.pendingSpace || collapsed.startsWith(' ')) && this.lineHasText) this.collector.append(' ');
    this.collector.append(body);
    this.lineHasText = true;
    this.pendingSpace = collapsed.endsWith(' ');
  }

  private appendRaw(raw: string): void {
    if (raw === '') return;
    this.flushBreak();
    this.collector.append(raw.replace(/\r\n?/g, '\n'));
    this.lineHasText = true;
    this.pendingSpace = false;
  }
}

function htmlToDocument(html: string): ParsedDocument {
  // Only script/style keep their raw text (never parsed as markup); <pre> is parsed normally so
  // that its inline tags become text, and the walker preserves its whitespace.
  const root = parseHtmlTree(html, { comment: false, blockTextElements: { script: true, style: true, noscript: true } });
  const walker = new HtmlTextWalker();
  const body = root.querySelector('body') ?? root;
  walker.walk(body);
  walker.finish();
  const title = collapseWhitespace(root.querySelector('title')?.text ?? '') || walker.firstH1;
  return withTitle({ sections: walker.collector.sections, pageCount: 1 }, title);
}

function parseHtml(bytes: Uint8Array): ParsedDocument {
  return htmlToDocument(decodeText(bytes, 'HTML file'));
}

async function parsePdf(bytes: Uint8Array): Promise<ParsedDocument> {
  const { getDocumentProxy, extractText, getMeta } = await import('unpdf');
  let pdf: Awaited<ReturnType<typeof getDocumentProxy>>;
  try {
    // pdf.js may detach the buffer it is given; hand it a copy so the caller's bytes stay intact.
    pdf = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0, useSystemFonts: false });
  } catch (error) {
    const name = (error as { name?: string } | null)?.name;
    const reason =
      name === 'PasswordException'
        ? 'it is password-protected'
        : `${(error as Error)?.message ?? String(error)}`.replace(/\.$/, '') || 'unknown error';
    throw new DocumentParseError('corrupt_file', `The PDF could not be read: ${reason}`, { cause: error });
  }
  try {
    const { totalPages, text } = await extractText(pdf, { mergePages: false });
    const sections: ParsedSection[] = [];
    for (const [index, pageText] of text.entries()) {
      const cleaned = cleanText(pageText);
      if (cleaned) sections.push({ text: cleaned, page: index + 1 });
    }
    let title: string | undefined;
    try {
      const info = (await getMeta(pdf)).info as Record<string, unknown> | undefined;
      if (typeof info?.Title === 'string') title = collapseWhitespace(info.Title) || undefined;
    } catch {
      // Metadata is optional; the text is what matters.
    }
    return withTitle({ sections, pageCount: totalPages }, title);
  } catch (error) {
    if (error instanceof DocumentParseError) throw error;
    throw new DocumentParseError('corrupt_file', `The PDF could not be read: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
    });
  } finally {
    // Frees pdf.js's parsed objects; the proxy holds them until its loading task is destroyed.
    await pdf.loadingTask.destroy().catch(() => undefined);
  }
}

async function parseDocx(bytes: Uint8Array): Promise<ParsedDocument> {
  const { default: mammoth } = await import('mammoth');
  let html: string;
  try {
    const result = await mammoth.convertToHtml(
      { buffer: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) },
      // Images would be inlined as base64 data URIs; only their alt text matters here.
      { convertImage: mammoth.images.imgElement(() => Promise.resolve({ src: '' })) },
    );
    html = result.value;
  } catch (error) {
    const reason = `${(error as Error)?.message ?? String(error)}`.replace(/\.$/, '');
    throw new DocumentParseError('corrupt_file', `The Word document could not be read: ${reason}`, { cause: error });
  }
  return htmlToDocument(html);
}

/** Splits CSV text into records, honouring quoted fields that contain commas or line breaks. */
function csvRecords(text: string): string[] {
  const records: string[] = [];
  let start = 0;
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') inQuotes = !inQuotes; // an escaped "" toggles twice: net unchanged
    else if (ch === '\n' && !inQuotes) {
      records.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (start < text.length) records.push(text.slice(start));
  return records.filter((record) => record.trim() !== '');
}

/** Rows per section are capped by size so a section (header + rows) stays well inside one chunk. */
const CSV_GROUP_CHARS = 1000;
const CSV_GROUP_MAX_ROWS = 50;

function parseCsv(bytes: Uint8Array): ParsedDocument {
  const text = decodeText(bytes, 'CSV file').replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  const [header, ...rows] = csvRecords(text);
  if (header === undefined) return { sections: [], pageCount: 1 };
  if (rows.length === 0) return { sections: [{ text: cleanText(header) }], pageCount: 1 };
  const sections: ParsedSection[] = [];
  let group: string[] = [];
  let groupChars = 0;
  const flush = () => {
    if (group.length > 0) sections.push({ text: cleanText([header, ...group].join('\n')) });
    group = [];
    groupChars = 0;
  };
  for (const row of rows) {
    if (group.length > 0 && (groupChars + row.length > CSV_GROUP_CHARS || group.length >= CSV_GROUP_MAX_ROWS)) flush();
    group.push(row);
    groupChars += row.length + 1;
  }
  flush();
  return { sections, pageCount: 1 };
}

function parseJson(bytes: Uint8Array): ParsedDocument {
  const text = decodeText(bytes, 'JSON file');
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new DocumentParseError('corrupt_file', `The JSON file could not be parsed: ${(error as Error).message}`, { cause: error });
  }
  const isObject = (v: unknown): v is object => typeof v === 'object' && v !== null;
  const isEmpty = (v: unknown) => v === null || (Array.isArray(v) ? v.length === 0 : isObject(v) && Object.keys(v).length === 0);
  if (isEmpty(value)) return { sections: [], pageCount: 1 };
  if (Array.isArray(value) && value.every(isObject)) {
    // One record per section keeps each element intact and self-describing in its chunk.
    const sections = value.filter((element) => !isEmpty(element)).map((element) => ({ text: JSON.stringify(element, null, 2) }));
    return { sections, pageCount: 1 };
  }
  return { sections: [{ text: JSON.stringify(value, null, 2) }], pageCount: 1 };
}

function withTitle(doc: ParsedDocument, title: string | undefined): ParsedDocument {
  if (title) doc.title = title;
  return doc;
}

const PARSERS: Record<string, (bytes: Uint8Array) => ParsedDocument | Promise<ParsedDocument>> = {
  [MIME.text]: parsePlainText,
  [MIME.markdown]: parseMarkdown,
  [MIME.html]: parseHtml,
  [MIME.pdf]: parsePdf,
  [MIME.docx]: parseDocx,
  [MIME.csv]: parseCsv,
  [MIME.json]: parseJson,
};

const formatMegabytes = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MB`;

/**
 * Parses an upload into sections. `contentType` should come from sniffContentType; a type outside
 * SUPPORTED_TYPES is refused. Throws DocumentParseError (unsupported_type, corrupt_file,
 * empty_document, too_large) with a message fit to show the uploader.
 */
export async function parseDocument(
  bytes: Uint8Array,
  options: { contentType: string; filename: string; maxBytes?: number },
): Promise<ParsedDocument> {
  const contentType = normalizeMime(options.contentType);
  const filename = sanitizeFilename(options.filename);
  const maxBytes = options.maxBytes ?? PARSE_LIMITS.maxBytes;
  const parser = PARSERS[contentType];
  if (!parser) {
    throw new DocumentParseError(
      'unsupported_type',
      `"${filename}" is not a supported document (detected ${contentType || 'unknown type'}). ` +
        'Upload a PDF, Word (.docx), HTML, Markdown, plain text, CSV or JSON file.',
    );
  }
  if (bytes.byteLength > maxBytes) {
    throw new DocumentParseError(
      'too_large',
      `"${filename}" is too large: ${formatMegabytes(bytes.byteLength)} (the limit is ${formatMegabytes(maxBytes)}).`,
    );
  }

  const doc = await parser(bytes);

  let totalChars = 0;
  for (const section of doc.sections) totalChars += section.text.length;
  if (totalChars > PARSE_LIMITS.maxTextChars) {
    throw new DocumentParseError(
      'too_large',
      `"${filename}" contains too much text: ${totalChars.toLocaleString('en-US')} characters ` +
        `(the limit is ${PARSE_LIMITS.maxTextChars.toLocaleString('en-US')}).`,
    );
  }
  doc.sections = doc.sections.filter((section) => section.text.trim() !== '');
  if (doc.sections.length === 0) {
    const hint = contentType === MIME.pdf ? ' Scanned PDFs (images of text) are not supported.' : '';
    throw new DocumentParseError('empty_document', `"${filename}" contains no text to index.${hint}`);
  }
  return doc;
}
