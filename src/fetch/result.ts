// What one fetch returns. A failure is data (a reason code and a message), never an exception.

import type { ReasonCode } from '../core/reasons.js';

/** The reason codes the fetch stage can give; a subset of REASONS in core/reasons.ts. */
export const FETCH_REASONS = [
  'unsupported_scheme',
  'http_status',
  'http_server_error',
  'rate_limited',
  'timeout',
  'network_error',
  'tls_error',
  'redirect_limit',
  'body_too_large',
  'robots_disallowed',
  'file_error',
] as const satisfies readonly ReasonCode[];

export type FetchReason = (typeof FETCH_REASONS)[number];

export interface FetchSuccess {
  readonly ok: true;
  readonly bytes: Buffer;
  /** HTTP status of the final response (2xx); 200 for a file read. */
  readonly status: number;
  /** URL after redirects; a `file://` URL for a file read. */
  readonly finalUrl: string;
  /** The final response's Content-Type as sent, undecided and unchecked; undefined for files. */
  readonly contentType: string | undefined;
  /** Tries made: 1 plus the retries used. Redirect hops are not counted. */
  readonly attempts: number;
}

export interface FetchFailure {
  readonly ok: false;
  readonly reason: FetchReason;
  readonly message: string;
  /** HTTP status of the response that decided the failure, when there was one. */
  readonly status?: number;
  readonly attempts: number;
}

export type FetchResult = FetchSuccess | FetchFailure;
