/**
 * Deterministic lexical embeddings: a text's vector is a signed feature-hashed bag of
 *   - words, mostly as a crude stem (defrosted → defrost) plus a little of the exact form, with sublinear
 *     term frequency and stopwords strongly down-weighted,
 *   - character 3–5-grams of each content word with boundary markers (`<regen`, `tion>`), so morphological
 *     and spelling variants (regenerate / regeneration, characterisation / characterization) land close,
 *   - adjacent content-word bigrams, so word order carries a little signal,
 * L2-normalised. Words are weighted by how informative they are, an IDF prior taken from the tokenizer's
 * vocabulary (BPE merge ranks follow frequency): "the"/"results" count little, "frequency" fully, and a word
 * the vocabulary has no single token for ("zebrafish", "TP53", "HEK293T") counts most. So, as with a neural
 * embedder, rare specific terms dominate the vector rather than the boilerplate around them.
 * Each feature adds ±weight to one bucket chosen by a hash seeded with the model id, which is
 * a sparse random projection of the (huge) lexical feature space: cosine similarity approximates the
 * lexical overlap of the two texts. No per-feature random vectors, so a 1,000-token text embeds in ~1 ms.
 * `dimensions` truncates and re-normalises (Matryoshka style, like OpenAI's text-embedding-3 models).
 */
import { fnv1a32, gaussian, mulberry32 } from './prng.ts';
import { encode, getEncoder } from './tokenizer.ts';

// Function words carry almost no topical signal; a real embedder learns to ignore them.
const STOPWORDS = new Set(
  (
    'a an the of and or to in on at for with by is are was were be been being it its this that these those as ' +
    'from into onto than then there here which who whom whose what when where why how not no nor but if so ' +
    'such can could may might must shall should will would do does did done has have had having we our us ' +
    'you your he she his her they them their i me my also all any each both either more most other some ' +
    'only same very just about after before over under between during while per via using used use ' +
    'de la le les et der die das und'
  ).split(' '),
);
const STOPWORD_WEIGHT = 0.1;
/** Relative weights of the feature families (the squared norm each contributes per content word). The
 * stem carries a word's identity; the exact surface form adds a little, so inflections count as the
 * same word (as a stemmed BM25 and a neural embedder treat them) with a slight edge for the exact form. */
const UNIGRAM_WEIGHT = 0.3;
const STEM_WEIGHT = 1;
const CHAR_NGRAM_WEIGHT = 0.9;
const BIGRAM_WEIGHT = 0.45;
const NGRAM_MIN = 3;
const NGRAM_MAX = 5;
/** Informativeness prior: single-token words of merge rank ≤ RANK_COMMON weigh RANK_FLOOR, rising
 * log-linearly to 1 at RANK_SPECIFIC; words that need several tokens weigh RARE_WORD_WEIGHT. */
const RANK_COMMON = 300;
const RANK_SPECIFIC = 30_000;
const RANK_FLOOR = 0.1;
const RARE_WORD_WEIGHT = 1.6;
/** Words shorter than this get no character n-grams (they are their own n-gram). */
const NGRAM_MIN_WORD = 4;

function randomUnitVector(seed: number, dims: number): Float64Array {
  const g = gaussian(mulberry32(seed));
  const v = new Float64Array(dims);
  for (let i = 0; i < dims; i++) v[i] = g();
  return normalize(v);
}

const FNV_PRIME = 0x01000193;

/** Adds ±weight to the bucket of a feature hash (signed hashing). */
function add(out: Float64Array, h: number, weight: number): void {
  out[h % out.length]! += h & 0x80000000 ? -weight : weight;
}

/** murmur3's fmix32 over an FNV-1a state, as in prng.ts's fnv1a32, so similar strings get unrelated hashes. */
function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** A content word's hashed features: bucket and signed weight (informativeness folded in). */
interface WordFeatures {
  buckets: Int32Array;
  weights: Float32Array;
}

/** Per model seed and dimension: word → features. Corpora repeat their vocabulary, so most words hit. */
const featureCache = new Map<string, Map<string, WordFeatures>>();
let cachedWords = 0;
const FEATURE_CACHE_MAX = 50_000;

/** Signed hashing: the bucket and the sign both come from one 32-bit hash of the feature. */
function push(h: number, dims: number, weight: number, buckets: number[], weights: number[]): void {
  buckets.push(h % dims);
  weights.push(h & 0x80000000 ? -weight : weight);
}

const SUFFIXES = ['ings', 'ing', 'ions', 'ion', 'ments', 'ment', 'ed', 'ly', 's'];

/**
 * A crude suffix-stripping stem, so inflections share one feature the way a stemmer would conflate them:
 * defrost/defrosted/defrosting → "defrost", regenerate/regeneration → "regenerat", processes → "process".
 */
export function crudeStem(word: string): string {
  let stem = word;
  for (const suffix of SUFFIXES) {
    if (!stem.endsWith(suffix) || stem.length - suffix.length < 3) continue;
    if (suffix === 's' && stem.endsWith('ss')) break; // "process", "glass"
    stem = stem.slice(0, -suffix.length);
    break;
  }
  return stem.length > 3 && stem.endsWith('e') ? stem.slice(0, -1) : stem;
}

/** One content word's features: its unigram, stem and character n-grams, weighted by informativeness. */
function wordFeatures(word: string, seed: number, dims: number): WordFeatures {
  const key = `${seed}/${dims}`;
  let forModel = featureCache.get(key);
  const hit = forModel?.get(word);
  if (hit) return hit;
  const scale = informativeness(word);
  const buckets: number[] = [];
  const weights: number[] = [];
  push(fnv1a32(word, seed), dims, scale * UNIGRAM_WEIGHT, buckets, weights);
  // The stem lives in its own hash space (a "~" never survives tokenizeWords), apart from unigrams.
  push(fnv1a32(`~${crudeStem(word)}`, seed), dims, scale * STEM_WEIGHT, buckets, weights);
  if (word.length >= NGRAM_MIN_WORD) {
    const len = word.length + 2; // with the boundary markers
    let grams = 0;
    for (let n = NGRAM_MIN; n <= NGRAM_MAX; n++) grams += Math.max(0, len - n + 1);
    // Spread a fixed squared norm over the word's n-grams so long words do not dominate.
    const w = (scale * CHAR_NGRAM_WEIGHT) / Math.sqrt(grams);
    // One FNV-1a pass per start position yields its 3-, 4- and 5-gram hashes without building
    // substrings; a seed of their own keeps n-grams apart from unigrams.
    const gramSeed = (seed ^ 0x9e3779b9) >>> 0;
    for (let i = 0; i + NGRAM_MIN <= len; i++) {
      let h = gramSeed;
      for (let j = i; j < len && j < i + NGRAM_MAX; j++) {
        const c = j === 0 ? 0x3c /* < */ : j === len - 1 ? 0x3e /* > */ : word.charCodeAt(j - 1);
        h = Math.imul(h ^ c, FNV_PRIME) >>> 0;
        if (j - i + 1 >= NGRAM_MIN) push(finish(h), dims, w, buckets, weights);
      }
    }
  }
  const features = { buckets: Int32Array.from(buckets), weights: Float32Array.from(weights) };
  // Dropping everything when full is O(1) amortised; evicting one key at a time from a Map is not
  // (V8 skips the deleted slots on every keys().next()).
  if (cachedWords >= FEATURE_CACHE_MAX) {
    featureCache.clear();
    cachedWords = 0;
    forModel = undefined;
  }
  if (!forModel) featureCache.set(key, (forModel = new Map()));
  forModel.set(word, features);
  cachedWords++;
  return features;
}

const utf8 = new TextEncoder();

/** js-tiktoken's rank table key for " word": its UTF-8 bytes joined by commas. */
function rankKey(word: string): string {
  let key = '32';
  for (let i = 0; i < word.length; i++) {
    const c = word.charCodeAt(i);
    if (c > 0x7f) return utf8.encode(` ${word}`).join(',');
    key += `,${c}`;
  }
  return key;
}

/** The o200k token id (= merge rank) of " word" when that is a single token, else undefined. */
function singleTokenRank(word: string): number | undefined {
  // js-tiktoken keeps its ranks in a Map keyed by comma-joined bytes; a lookup costs well under a µs,
  // a full encode() ~20 µs. Fall back to encode() should a js-tiktoken upgrade rename the field.
  const ranks = (getEncoder() as unknown as { rankMap?: Map<string, number> }).rankMap;
  if (ranks instanceof Map) return ranks.get(rankKey(word));
  const tokens = encode(` ${word}`);
  return tokens.length === 1 ? tokens[0] : undefined;
}

/** How much a content word counts (see RANK_COMMON). */
function informativeness(word: string): number {
  const rank = word.length > 40 ? undefined : singleTokenRank(word);
  if (rank === undefined) return RARE_WORD_WEIGHT;
  const t = Math.log(Math.max(rank, 1) / RANK_COMMON) / Math.log(RANK_SPECIFIC / RANK_COMMON);
  return Math.min(1, Math.max(RANK_FLOOR, RANK_FLOOR + (1 - RANK_FLOOR) * t));
}

export function tokenizeWords(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Sublinear term frequency, as in tf-idf weighting: the 5th mention adds far less than the 1st. */
const tfWeight = (count: number) => 1 + Math.log(count);

/** Full-dimension, unit-norm embedding of a text. */
export function embedText(text: string, modelId: string, dims: number): Float64Array {
  const seed = fnv1a32(`embedding-model\u0000${modelId}`);
  const words = tokenizeWords(text);
  const counts = new Map<string, number>();
  const bigrams = new Map<string, number>();
  let previous: string | undefined;
  for (const word of words) {
    counts.set(word, (counts.get(word) ?? 0) + 1);
    if (STOPWORDS.has(word)) continue; // bigrams skip over function words: "rate of decay" → rate·decay
    if (previous !== undefined) {
      const bigram = `${previous} ${word}`;
      bigrams.set(bigram, (bigrams.get(bigram) ?? 0) + 1);
    }
    previous = word;
  }
  const out = new Float64Array(dims);
  for (const [word, count] of counts) {
    if (STOPWORDS.has(word)) {
      add(out, fnv1a32(word, seed), tfWeight(count) * STOPWORD_WEIGHT);
      continue;
    }
    const f = wordFeatures(word, seed, dims);
    const scale = tfWeight(count);
    for (let i = 0; i < f.buckets.length; i++) out[f.buckets[i]!]! += scale * f.weights[i]!;
  }
  // A bigram contains a space, so it never hashes as the same string as a unigram.
  for (const [bigram, count] of bigrams) add(out, fnv1a32(bigram, seed), BIGRAM_WEIGHT * tfWeight(count));
  let norm = 0;
  for (let i = 0; i < dims; i++) norm += out[i]! * out[i]!;
  // A text without words (empty, punctuation only) still gets a deterministic unit vector.
  if (norm === 0) return randomUnitVector(fnv1a32(`${modelId}\u0001${text}`), dims);
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
  const out = normalize(v.subarray(0, dimensions));
  // A very short text may hash into no bucket of the prefix; keep the result a unit vector anyway.
  if (dimensions > 0 && out.every((x) => x === 0)) out[0] = 1;
  return out;
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
