// Stable reason codes for every row a stage rejects. They are data, not exceptions: a rejected
// sample carries one of these, the reject log stores it, stats count by it. Never rename a code.

/** Why a row was dropped, grouped by the stage that decides it. Value = one-line description (docs, --help). */
export const REASONS = {
  // manifest
  malformed_row: 'the manifest row could not be parsed, or its URL field is empty or not a URL',
  // dedupe (ingest)
  duplicate_url: 'the normalised URL was already seen in this run',
  duplicate_image: 'the downloaded bytes (sha256) were already kept',
  duplicate_pair: 'the same image and normalised caption were already kept',
  // fetch
  unsupported_scheme: 'the URL scheme is not http, https or file',
  http_status: 'the server answered a 4xx status other than 429 (not retried)',
  http_server_error: 'the server answered 5xx on every attempt',
  rate_limited: 'the server answered 429 on every attempt',
  timeout: 'connect, header or body deadline passed on every attempt',
  network_error: 'connection refused, reset, DNS failure or similar on every attempt',
  tls_error: 'the TLS handshake failed: a certificate that is invalid, expired, self-signed or for another host, or a server that does not speak TLS (not retried)',
  redirect_limit: 'more redirects than allowed, or a redirect loop',
  body_too_large: 'the body (or its Content-Length) exceeded the size cap',
  robots_disallowed: 'X-Robots-Tag forbids use (noai, noimageai, noindex, noimageindex)',
  file_error: 'a file:// URL or path could not be read',
  // decode
  not_an_image: 'the bytes are not an image format sharp can decode',
  corrupt_image: 'the image is truncated or corrupt',
  pixel_limit: 'the image has more pixels than the decompression-bomb limit',
  // filter (FILIP rules and extras); image rules use the original size recorded at ingest
  image_too_small: 'the shorter side of the original image is under the minimum (FILIP: 200 px)',
  aspect_ratio: 'longer side / shorter side of the original image is over the maximum (FILIP: 3)',
  not_english: 'the caption is not English',
  meaningless_text: 'the caption carries no description (file name, camera default, URL, hash, number...)',
  repeated_text: 'the normalised caption occurs more times in the corpus than allowed (FILIP: 10)',
  near_duplicate: 'the perceptual hash is within the distance threshold of an image kept earlier',
  contaminated: 'the image is a near duplicate of an image of a user-given evaluation set',
  too_few_words: 'the caption has too few words or characters (datacomp-basic preset)',
  // shard stage: translation_failed is recorded on kept rows; augment_failed rejects the row
  translation_failed: 'the translator failed or returned nothing for this caption and pivot (row kept)',
  augment_failed: 'AutoAugment could not decode or encode this image (the row goes to the reject log)',
} as const;

export type ReasonCode = keyof typeof REASONS;
export const REASON_CODES = Object.keys(REASONS) as ReasonCode[];

/** Failures that may go away on a later attempt: `--retry-failed` re-attempts exactly these. */
export const TRANSIENT_REASONS: ReadonlySet<ReasonCode> = new Set<ReasonCode>([
  'http_server_error',
  'rate_limited',
  'timeout',
  'network_error',
]);

export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === 'string' && Object.hasOwn(REASONS, value);
}
