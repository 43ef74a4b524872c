/**
 * Deterministic "semantic-ish" embeddings: the vector of a text is the sum of per-word pseudo-random unit
 * vectors (seeded by a hash of the word and the model id) plus a small text-specific component, then
 * L2-normalised. Texts sharing words are therefore closer (cosine) than unrelated texts, which keeps
 * retrieval tests meaningful. `dimensions` truncates and re-normalises (Matryoshka style, like OpenAI's
 * text-embedding-3 models).
 */
import { fnv1a32, gaussian, mulberry32 } from './prng.ts';

const STOPWORDS = new Set([
  'a', 'an', 'the', 'of', 'and', 'or', 'to', 'in', 'on', 'at', 'for', 'with', 'by', 'is', 'are', 'was',
  'were', 'be', 'it', 'this', 'that', 'as', 'from', 'de', 'la', 'le', 'et', 'der', 'die', 'und',
]);
const STOPWORD_WEIGHT = 0.25;
/** Weight of the text-specific component relative to the norm of the word sum. */
const TEXT_NOISE_WEIGHT = 0.15;

const WORD_CACHE_MAX = 4096;
const wordCache = new Map<string, Float32Array>();

function randomUnitVector(seed: number, dims: number): Float32Array {
  const g = gaussian(mulberry32(seed));
  const v = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    const x = g();
    v[i] = x;
    norm += x * x;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < dims; i++) v[i] = (v[i] ?? 0) / norm;
  return v;
}

function wordVector(word: string, modelId: string, dims: number): Float32Array {
  const key = `${modelId}\u0000${dims}\u0000${word}`;
  let v = wordCache.get(key);
  if (!v) {
    v = randomUnitVector(fnv1a32(key), dims);
    if (wordCache.size >= WORD_CACHE_MAX) {
      const oldest = wordCache.keys().next().value;
      if (oldest !== undefined) wordCache.delete(oldest);
    }
    wordCache.set(key, v);
  }
  return v;
}

export function tokenizeWords(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Full-dimension, unit-norm embedding of a text. */
export function embedText(text: string, modelId: string, dims: number): Float64Array {
  const out = new Float64Array(dims);
  for (const word of tokenizeWords(text)) {
    const w = STOPWORDS.has(word) ? STOPWORD_WEIGHT : 1;
    const v = wordVector(word, modelId, dims);
    for (let i = 0; i < dims; i++) out[i] = (out[i] ?? 0) + w * (v[i] ?? 0);
  }
  let norm = 0;
  for (let i = 0; i < dims; i++) norm += (out[i] ?? 0) ** 2;
  norm = Math.sqrt(norm);
  const noise = randomUnitVector(fnv1a32(`${modelId}\u0001${text}`), dims);
  const noiseWeight = norm > 0 ? TEXT_NOISE_WEIGHT * norm : 1;
  for (let i = 0; i < dims; i++) out[i] = (out[i] ?? 0) + noiseWeight * (noise[i] ?? 0);
  return normalize(out);
}

export function normalize(v: Float64Array): Float64Array {
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += (v[i] ?? 0) ** 2;
  norm = Math.sqrt(norm) || 1;
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = (v[i] ?? 0) / norm;
  return out;
}

/** Truncate to `dimensions` and re-normalise. */
export function truncateEmbedding(v: Float64Array, dimensions: number): Float64Array {
  if (dimensions >= v.length) return v;
  return normalize(v.subarray(0, dimensions));
}

/** OpenAI's base64 format: little-endian float32 bytes, base64-encoded. */
export function toBase64(v: Float64Array): string {
  const f32 = Float32Array.from(v);
  const bytes = Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    // big-endian host: swap to little-endian
    const swapped = Buffer.from(bytes);
    swapped.swap32();
    return swapped.toString('base64');
  }
  return bytes.toString('base64');
}

export function toFloatArray(v: Float64Array): number[] {
  // round-trip through float32 like the real API (which serves float32 values)
  return Array.from(Float32Array.from(v));
}
