// Progress of a long run: a redrawn status line on a TTY, plain log lines elsewhere, nothing when
// asked. Rates are over the whole run so far; ETA only when the number of input rows is known.

import type { Sample } from '../core/sample.js';

export const PROGRESS_MODES = {
  auto: 'a status line on a TTY, log lines otherwise',
  tty: 'always a redrawn status line',
  log: 'a plain log line every few seconds',
  none: 'no progress output',
} as const;
export type ProgressMode = keyof typeof PROGRESS_MODES;

export interface ProgressOptions {
  readonly mode: ProgressMode;
  /** Rows expected in this run, when known (for ETA). */
  readonly total?: number;
  readonly stream: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Seconds between log lines in `log` mode. */
  readonly logEverySeconds?: number;
  readonly label?: string;
}

export class Progress {
  rows = 0;
  ok = 0;
  readonly #o: ProgressOptions;
  readonly #started = performance.now();
  readonly #tty: boolean;
  #timer?: NodeJS.Timeout;
  #drawn = false;

  constructor(options: ProgressOptions) {
    this.#o = options;
    const isTty = 'isTTY' in options.stream && options.stream.isTTY === true;
    this.#tty = options.mode === 'tty' || (options.mode === 'auto' && isTty);
    if (options.mode === 'none') return;
    const every = this.#tty ? 250 : (options.logEverySeconds ?? 10) * 1000;
    this.#timer = setInterval(() => this.#draw(), every);
    this.#timer.unref();
  }

  tick(sample: Sample): void {
    this.rows++;
    if (sample.status === 'ok') this.ok++;
  }

  line(): string {
    const secs = Math.max((performance.now() - this.#started) / 1000, 1e-3);
    const rps = this.rows / secs;
    const ips = this.ok / secs;
    const rate = this.rows === 0 ? 0 : (100 * this.ok) / this.rows;
    const parts = [
      `${this.#o.label ?? 'ingest'}: ${this.rows}${this.#o.total !== undefined ? `/${this.#o.total}` : ''} rows`,
      `${rps.toFixed(1)} rows/s`,
      `${ips.toFixed(1)} images/s`,
      `${rate.toFixed(1)}% ok`,
      `elapsed ${formatDuration(secs)}`,
    ];
    if (this.#o.total !== undefined && rps > 0) {
      parts.push(`ETA ${formatDuration(Math.max(this.#o.total - this.rows, 0) / rps)}`);
    }
    return parts.join(' | ');
  }

  /** Prints a plain message without breaking the status line. */
  log(message: string): void {
    if (this.#o.mode === 'none') return;
    if (this.#tty && this.#drawn) this.#o.stream.write('\r\x1b[K');
    this.#o.stream.write(`${message}\n`);
    this.#drawn = false;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#o.mode === 'none') return;
    this.#draw();
    if (this.#tty) this.#o.stream.write('\n');
  }

  #draw(): void {
    if (this.#tty) {
      this.#o.stream.write(`\r\x1b[K${this.line()}`);
      this.#drawn = true;
    } else {
      this.#o.stream.write(`${new Date().toISOString()} ${this.line()}\n`);
    }
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}
