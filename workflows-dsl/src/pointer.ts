// RFC 6901 JSON pointers.

export function escapeSegment(segment: string | number): string {
  return String(segment).replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointerJoin(base: string, ...segments: (string | number)[]): string {
  return segments.reduce<string>((acc, segment) => `${acc}/${escapeSegment(segment)}`, base);
}

export function pointerSegments(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** True when `pointer` is `base` or lies under it. */
export function pointerWithin(pointer: string, base: string): boolean {
  return pointer === base || pointer.startsWith(`${base}/`);
}
