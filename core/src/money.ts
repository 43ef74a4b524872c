// Money is bigint micro-units (1 USD = 1_000_000 micros). Prices are micros per 1M tokens.
export type Micros = bigint;

export const MICROS_PER_UNIT = 1_000_000n;
const TOKENS_PER_PRICE_UNIT = 1_000_000n;

/** Cost of `tokens` at `microsPerMillion`, rounded up so fractions of a micro are never given away. */
export function tokenCostMicros(tokens: number | bigint, microsPerMillion: bigint): Micros {
  const t = BigInt(tokens);
  if (t < 0n) throw new RangeError('tokens must be >= 0');
  if (microsPerMillion < 0n) throw new RangeError('price must be >= 0');
  const product = t * microsPerMillion;
  return (product + TOKENS_PER_PRICE_UNIT - 1n) / TOKENS_PER_PRICE_UNIT;
}

export interface TokenPrice {
  inputMicrosPerMillion: bigint;
  outputMicrosPerMillion: bigint;
}

export function callCostMicros(price: TokenPrice, promptTokens: number, completionTokens: number): Micros {
  return tokenCostMicros(promptTokens, price.inputMicrosPerMillion) + tokenCostMicros(completionTokens, price.outputMicrosPerMillion);
}

/** Parses a decimal amount such as "12.5" into micros; rejects more than 6 decimals. */
export function parseAmountToMicros(amount: string): Micros {
  const match = /^(-)?(\d{1,12})(?:\.(\d{1,6}))?$/.exec(amount.trim());
  if (!match) throw new RangeError(`not a decimal amount with at most 6 decimals: "${amount}"`);
  const [, sign, whole, fraction = ''] = match;
  const micros = BigInt(whole!) * MICROS_PER_UNIT + BigInt(fraction.padEnd(6, '0'));
  return sign ? -micros : micros;
}

export function formatMicros(micros: Micros): string {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / MICROS_PER_UNIT;
  const fraction = (abs % MICROS_PER_UNIT).toString().padStart(6, '0');
  return `${negative ? '-' : ''}${whole}.${fraction}`;
}
