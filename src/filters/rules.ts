// Pure predicates of the filter rules that need no model or corpus state. Image rules take the
// ORIGINAL size recorded at ingest (before resize): a 1000x150 banner resized to 256 px is still a banner.

/** True when the shorter side is under `minSide` pixels (FILIP: 200). */
export function isTooSmall(width: number, height: number, minSide: number): boolean {
  return Math.min(width, height) < minSide;
}

/** True when longer side / shorter side exceeds `maxAspect` (FILIP: 3). A zero side is always too wide. */
export function isTooElongated(width: number, height: number, maxAspect: number): boolean {
  const short = Math.min(width, height);
  if (short <= 0) return true;
  return Math.max(width, height) / short > maxAspect;
}

/** Words as DataComp counts them: runs of non-space characters. */
export function wordCount(text: string): number {
  const t = text.trim();
  return t.length === 0 ? 0 : t.split(/\s+/u).length;
}

/**
 * DataComp basic text rule: the caption has MORE than `minWords` words and MORE than `minChars`
 * characters (DataComp: more than 2 words and more than 5 characters). True when it fails.
 */
export function hasTooFewWords(text: string, minWords: number, minChars: number): boolean {
  const t = text.trim();
  return !(wordCount(t) > minWords && [...t].length > minChars);
}
