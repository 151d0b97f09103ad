// The offline engine: Apertium's rule-based pipelines (Debian packages `apertium` plus a pair such as
// `apertium-eng-spa`), run as long-lived child processes, one per direction.
//
// Why not `apertium eng-spa` over a file of lines: in its text format a newline is only a blank, so the
// tagger and the chunk transfer see one stream of words and move them across lines ("a big\nhouse of
// my friend" comes back as "Una casa\ngrande de mi amigo"), and captions, which rarely end in a full
// stop, run into each other. Instead every tool of the mode runs in null-flush mode (`-z`, the
// pipeline `apertium-wblank-mode -z` prints): a NUL ends a block, each tool finishes the block, writes
// its output followed by a NUL and flushes. No rule, tagger window or reordering crosses a NUL, so the
// k-th NUL-terminated output block is the translation of the k-th input block, whatever else is in
// flight, and many captions can be written at once without waiting for each answer. Each block also
// ends in a tag (`[filip:ID]`, a superblank the tools pass through untouched): an answer whose tag is
// not the one expected (a tool died mid-block and flushed a fragment) is never taken for a
// translation; the pipeline is restarted and the texts in flight are tried again one by one.
//
// The deformatter (`apertium-destxt`) drops NULs, so this module does its job itself: escape the
// stream format's reserved characters and end each caption with the ghost full stop `.[]` that destxt
// adds (it tells the tagger a sentence ends there; the reformatter removes it). Output is turned back
// into text by the reverse rules of `apertium-retxt`.

import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { FilipError } from '../core/errors.js';
import { boolOption, intOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import { normalizeForTranslation, textError, type Translator } from './engine.js';

const execFileAsync = promisify(execFile);

export interface ApertiumOptions {
  /**
   * Folder of Apertium mode files (`eng-spa.mode`, `spa-eng.mode`, ...).
   * @default '/usr/share/apertium/modes'
   */
  readonly modesDir?: string;
  /**
   * A call whose texts are not all back within this many milliseconds fails its pending texts; the
   * pipeline of that direction is killed and started afresh on the next call.
   * @default 60000
   */
  readonly timeoutMs?: number;
  /**
   * Keep Apertium's marks on unknown words (`*word`). Off: unknown words are copied as they are.
   * @default false
   */
  readonly markUnknown?: boolean;
}

export const DEFAULT_APERTIUM_OPTIONS = {
  modesDir: '/usr/share/apertium/modes',
  timeoutMs: 60_000,
  markUnknown: false,
} as const satisfies Required<ApertiumOptions>;

export type ResolvedApertiumOptions = { -readonly [K in keyof ApertiumOptions]-?: NonNullable<ApertiumOptions[K]> };

export function resolveApertiumOptions(given: ApertiumOptions = {}): ResolvedApertiumOptions {
  rejectUnknownKeys('apertium', given, DEFAULT_APERTIUM_OPTIONS);
  const o = { ...DEFAULT_APERTIUM_OPTIONS, ...definedOnly(given) };
  return {
    modesDir: stringOption('modesDir', o.modesDir),
    timeoutMs: intOption('timeoutMs', o.timeoutMs, 1),
    markUnknown: boolOption('markUnknown', o.markUnknown),
  };
}

/** Characters the Apertium stream format reserves; `apertium-destxt` escapes the same set. */
const RESERVED = /[\\[\]^$/@<>{}]/g;
/**
 * Characters the pipeline drops even escaped (a tilde joins words in the stream); `apertium-destxt`
 * puts them in a superblank, which passes through untouched and which reformat gives back.
 */
const FORMAT = /~+/g;

/**
 * One caption as an Apertium text block: reserved characters escaped, tildes in superblanks, the
 * ghost full stop, a tag `[filip:ID]` and the NUL. The tag is a superblank, which every tool passes through untouched and in
 * place, so each output block says which input it answers (see untag).
 */
export function deformat(text: string, id: number): string {
  return `${text.replace(RESERVED, (c) => `\\${c}`).replace(FORMAT, (t) => `[${t}]`)}.[][filip:${id}]\0`;
}

/**
 * The block without its tag if it ends with the tag of input `id`, else undefined: a block cut short
 * by a dying tool, or one answering another input, is never taken for this input's translation.
 * (A caption's own "[filip:1]" cannot match: its brackets are escaped.)
 */
export function untag(block: string, id: number): string | undefined {
  const tag = `[filip:${id}]`;
  return block.endsWith(tag) && block[block.length - tag.length - 1] !== '\\' ? block.slice(0, -tag.length) : undefined;
}

/**
 * One output block back to text, as `apertium-retxt` does: superblanks `[...]` give their content
 * back, an empty one right after a full stop removes that (ghost) full stop, escapes are undone.
 */
export function reformat(block: string): string {
  let out = '';
  for (let i = 0; i < block.length; i++) {
    const c = block[i]!;
    if (c === '\\' && i + 1 < block.length) {
      out += block[++i];
    } else if (c === '[') {
      // Find the closing bracket, skipping escaped characters; nested [[...]] word blanks included.
      let depth = 1;
      let j = i + 1;
      let inner = '';
      for (; j < block.length && depth > 0; j++) {
        const d = block[j]!;
        if (d === '\\' && j + 1 < block.length) {
          inner += block[++j];
          continue;
        }
        if (d === '[') depth++;
        else if (d === ']') depth--;
        if (depth > 0) inner += d;
      }
      i = j - 1;
      if (inner === '' && out.endsWith('.')) out = out.slice(0, -1);
      else if (!inner.startsWith('[')) out += inner; // [[t:...]] word-bound blanks carry no text
    } else {
      out += c;
    }
  }
  return out.replace(/\s+/g, ' ').trim();
}

/** The pipeline died on its own (not killed for a timeout): the texts in flight may be innocent. */
class PipelineCrash extends Error {
  override name = 'PipelineCrash';
}

interface Pending {
  readonly id: number;
  readonly resolve: (text: string | Error) => void;
}

/** One direction's long-lived null-flush pipeline. Answers come back in write order. */
class NullFlushPipeline {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending: Pending[] = [];
  private chunks: Buffer[] = [];
  private stderrTail = '';
  private nextId = 0;
  dead: Error | undefined;

  constructor(
    readonly pair: string,
    script: string,
    generatorFlag: string,
  ) {
    // detached: the pipeline is a process group (bash and a dozen tools) that kill() ends at once.
    this.proc = spawn('bash', ['-c', `export LC_ALL=C.UTF-8; ${script}`, `apertium-${pair}`, generatorFlag, ''], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    this.proc.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    this.proc.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-2000);
    });
    // A write to a pipeline that died is reported through 'exit' below; keep EPIPE from throwing.
    this.proc.stdin.on('error', () => {});
    this.proc.on('error', (err) => this.fail(new PipelineCrash(`cannot start the ${pair} pipeline: ${err.message}`)));
    this.proc.on('exit', (code, signal) => {
      const why = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
      this.fail(new PipelineCrash(`the ${pair} pipeline exited (${signal ?? `code ${code}`})${why ? `: ${why}` : ''}`));
    });
  }

  /** Writes all texts in one go; each promise settles when its own NUL-terminated block comes back. */
  send(texts: readonly string[]): Promise<string | Error>[] {
    if (this.dead) return texts.map(() => Promise.resolve(this.dead!));
    const ids = texts.map(() => this.nextId++);
    const answers = ids.map((id) => new Promise<string | Error>((resolve) => this.pending.push({ id, resolve })));
    this.proc.stdin.write(texts.map((t, k) => deformat(t, ids[k]!)).join(''));
    return answers;
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (let nul = chunk.indexOf(0); nul !== -1; nul = chunk.indexOf(0, start)) {
      this.chunks.push(chunk.subarray(start, nul));
      const block = Buffer.concat(this.chunks).toString('utf8');
      this.chunks = [];
      start = nul + 1;
      const p = this.pending.shift();
      // A block nobody waits for can only be a stray flush at shutdown; it is dropped.
      if (!p) continue;
      const body = untag(block, p.id);
      if (body !== undefined) {
        p.resolve(reformat(body));
      } else {
        // Out of step (a tool died mid-block and flushed what it had): nothing after this can be
        // trusted. This text and every one in flight fail; translate() retries them one by one.
        p.resolve(new PipelineCrash(`the ${this.pair} pipeline answered out of step (${JSON.stringify(block.slice(-60))})`));
        this.kill(new PipelineCrash(`the ${this.pair} pipeline answered out of step; restarted`));
        return;
      }
    }
    if (start < chunk.length) this.chunks.push(chunk.subarray(start));
  }

  fail(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.splice(0)) p.resolve(err);
  }

  kill(err: Error): void {
    this.fail(err);
    try {
      if (this.proc.pid !== undefined) process.kill(-this.proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.stdin.end();
    const timer = setTimeout(() => this.kill(new Error('closed')), 5000);
    await exited;
    clearTimeout(timer);
  }
}

export class ApertiumTranslator implements Translator {
  readonly engine = 'apertium';
  readonly options: ResolvedApertiumOptions;
  private readonly pipelines = new Map<string, Promise<NullFlushPipeline>>();
  private closed = false;

  constructor(options: ApertiumOptions = {}) {
    this.options = resolveApertiumOptions(options);
  }

  /** Path of the mode file for a direction, e.g. `.../modes/eng-spa.mode`. */
  modeFile(from: string, to: string): string {
    return join(this.options.modesDir, `${from}-${to}.mode`);
  }

  /**
   * Throws FILIP_ERR_TRANSLATOR unless Apertium can translate from -> to here: the mode file exists
   * and `apertium-wblank-mode` (apertium >= 3.8) can turn it into a null-flush pipeline.
   */
  async check(from: string, to: string): Promise<void> {
    await this.pipelineScript(from, to);
  }

  async translate(texts: readonly string[], from: string, to: string): Promise<(string | Error)[]> {
    if (this.closed) throw new FilipError('FILIP_ERR_TRANSLATOR', 'the apertium translator is closed');
    // NULs would cut a block in two and newlines are only blanks: both go with the other whitespace.
    const clean = texts.map(normalizeForTranslation);
    const out: (string | Error)[] = clean.map(() => '');
    const todo = clean.flatMap((t, i) => (t === '' ? [] : [i]));
    if (todo.length === 0) return out;
    const asText = (r: string | Error) => (r instanceof Error ? textError('apertium', from, to, r.message) : r);
    const first = await this.run(todo.map((i) => clean[i]!), from, to);
    const crashed: number[] = [];
    first.forEach((r, k) => {
      if (r instanceof PipelineCrash && todo.length > 1) crashed.push(todo[k]!);
      else out[todo[k]!] = asText(r);
    });
    // A pipeline that died (rather than timed out) takes every text in flight with it, though one
    // text may be the cause: each of those gets a run of its own, so only the culprit fails.
    for (const i of crashed) out[i] = asText((await this.run([clean[i]!], from, to))[0]!);
    return out;
  }

  /** Sends texts through the direction's pipeline; a stuck pipeline is killed after timeoutMs. */
  private async run(texts: readonly string[], from: string, to: string): Promise<(string | Error)[]> {
    const pipeline = await this.pipeline(from, to);
    const answers = pipeline.send(texts);
    const timer = setTimeout(
      () => pipeline.kill(new Error(`no answer within ${this.options.timeoutMs} ms; pipeline restarted`)),
      this.options.timeoutMs,
    );
    try {
      return await Promise.all(answers);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pipelines.values()];
    this.pipelines.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }

  /** The live pipeline of a direction; a dead one (crashed, timed out) is replaced by a fresh one. */
  private async pipeline(from: string, to: string): Promise<NullFlushPipeline> {
    const pair = `${from}-${to}`;
    const p = this.pipelines.get(pair);
    if (p) {
      const live = await p.catch(() => undefined);
      if (live && !live.dead) return live;
      if (this.pipelines.get(pair) === p) this.pipelines.delete(pair);
      return this.pipeline(from, to);
    }
    const flag = this.options.markUnknown ? '-g' : '-n';
    const fresh = this.pipelineScript(from, to).then((script) => new NullFlushPipeline(pair, script, flag));
    this.pipelines.set(pair, fresh);
    fresh.catch(() => {
      if (this.pipelines.get(pair) === fresh) this.pipelines.delete(pair);
    });
    return fresh;
  }

  private async pipelineScript(from: string, to: string): Promise<string> {
    const mode = this.modeFile(from, to);
    try {
      await access(mode);
    } catch {
      throw new FilipError(
        'FILIP_ERR_TRANSLATOR',
        `Apertium has no ${from}-${to} mode: ${mode} is missing. Install the pair (e.g. apt-get install apertium-${from}-${to}); ` +
          'Debian ships eng-spa and eng-cat, but no eng-deu or eng-rus pair',
        { file: mode },
      );
    }
    try {
      const { stdout } = await execFileAsync('apertium-wblank-mode', ['-z', mode]);
      return stdout;
    } catch (err) {
      throw new FilipError(
        'FILIP_ERR_TRANSLATOR',
        `cannot build the null-flush pipeline for ${from}-${to} with apertium-wblank-mode (apertium >= 3.8 needed): ${(err as Error).message}`,
        { file: mode },
        { cause: err },
      );
    }
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
