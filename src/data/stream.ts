// The trainer's data loader: a seeded, resumable stream of TrainingSamples over a folder of training
// shards, split across workers.
//
// One epoch of one worker is computed in three steps, each a pure function of (seed, epoch, worker):
//   1. shard order: the shards, permuted with a PRNG seeded by (seed, epoch) when shuffleShards is on;
//   2. this worker's part: with at least as many shards as workers, worker i of n takes shards i, i+n,
//      ... of that order; with fewer, every shard is cut into n row ranges and worker i takes range i of
//      each, so every sample still goes to exactly one worker;
//   3. a shuffle buffer over the rows in that order (webdataset's shuffle(N)): the first N rows fill it,
//      then each further row takes the place of a random one, which is yielded; the rest leave in random
//      order at the end.
// The buffer's random choices depend only on how many rows came in, never on what they are. So resuming
// at `consumed` replays those choices on row numbers alone (no file is read), which says which rows sit
// in the buffer and in which slots; only those (at most bufferSize) are fetched, and reading goes on
// from the first row not yet read. The resumed stream yields exactly what the uninterrupted one would.

import { FilipError } from '../core/errors.js';
import { boolOption, choiceOption, intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import { mulberry32 } from '../core/random.js';
import {
  STREAM_FIELD_NAMES,
  listShards,
  newCounters,
  openShard,
  type AnySample,
  type ReadCounters,
  type ShardInfo,
  type ShardReader,
  type StreamField,
  type TrainingSample,
} from './shards.js';

/** Where a stream stands: `consumed` samples of epoch `epoch` have been yielded. */
export interface StreamPosition {
  readonly epoch: number;
  readonly consumed: number;
}

export interface ShardStreamOptions<F extends StreamField = StreamField> {
  /** Seeds the shard order and the shuffle buffer. @default 0 */
  readonly seed: number;
  /** The epoch to start at (its shard order and buffer choices differ from every other epoch's). @default 0 */
  readonly epoch: number;
  /** Permute the shards anew each epoch, with (seed, epoch). Off: shards in name order. @default true */
  readonly shuffleShards: boolean;
  /**
   * Rows held by the shuffle buffer; 0 yields rows in shard order. Memory is about this many samples (each
   * with its image and views) plus one row group. @default 0
   */
  readonly bufferSize: number;
  /**
   * This worker, 0-based. For data-parallel training with loader workers, use
   * `rank * loadersPerRank + loader` and `workers = worldSize * loadersPerRank`. @default 0
   */
  readonly worker: number;
  /** Number of workers the data is split across; together they yield every sample once per epoch. @default 1 */
  readonly workers: number;
  /** Field groups to read (`STREAM_FIELDS`); leave out `image` and `views` to read captions only. @default all */
  readonly columns: readonly F[];
  /** Go on with the next epoch when one ends, forever. Off: the stream ends with its epoch. @default false */
  readonly loop: boolean;
  /** Start here instead of at the start of `epoch` (from a checkpoint's `stream.position()`). @default { epoch, consumed: 0 } */
  readonly position: StreamPosition;
  /** Read a filip-data output whose run has not finished (see `listShards`). @default false */
  readonly partialInput: boolean;
  /** The caller has a --partial-input flag, so the unfinished-input error may suggest it. @default false */
  readonly partialFlag: boolean;
}

export type ShardStreamInput<F extends StreamField = StreamField> = Partial<ShardStreamOptions<F>>;

const DEFAULTS = {
  seed: 0,
  epoch: 0,
  shuffleShards: true,
  bufferSize: 0,
  worker: 0,
  workers: 1,
  columns: STREAM_FIELD_NAMES as readonly StreamField[],
  loop: false,
  position: undefined as StreamPosition | undefined,
  partialInput: false,
  partialFlag: false,
};

const UINT32_MAX = 0xffffffff;

export function resolveShardStreamOptions<F extends StreamField = StreamField>(input: ShardStreamInput<F> = {}): ShardStreamOptions<F> {
  if (typeof input !== 'object' || input === null) throw invalid('options', 'an object', input);
  rejectUnknownKeys('shard stream', input, DEFAULTS);
  const o = { ...DEFAULTS, ...stripUndefined(input) };
  const workers = intOption('workers', o.workers, 1);
  const epoch = intOption('epoch', o.epoch, 0, UINT32_MAX);
  if (!Array.isArray(o.columns) || o.columns.length === 0) {
    throw invalid('columns', `a non-empty list of ${STREAM_FIELD_NAMES.map((c) => JSON.stringify(c)).join(', ')}`, o.columns);
  }
  const columns = [...new Set(o.columns.map((c: unknown) => choiceOption('columns', c, STREAM_FIELD_NAMES)))] as F[];
  let position: StreamPosition = { epoch, consumed: 0 };
  if (o.position !== undefined) {
    const p = o.position as unknown as Record<string, unknown>;
    if (typeof p !== 'object' || p === null) throw invalid('position', 'an object {epoch, consumed}', p);
    rejectUnknownKeys('position', p, { epoch: 0, consumed: 0 });
    position = {
      epoch: intOption('position.epoch', p.epoch, 0, UINT32_MAX),
      consumed: intOption('position.consumed', p.consumed, 0),
    };
    if (input.epoch !== undefined && input.epoch !== position.epoch) {
      throw invalid('epoch', `the epoch of \`position\` (${position.epoch}) or left out`, input.epoch);
    }
  }
  return {
    seed: intOption('seed', o.seed, 0, UINT32_MAX),
    epoch: position.epoch,
    shuffleShards: boolOption('shuffleShards', o.shuffleShards),
    bufferSize: intOption('bufferSize', o.bufferSize, 0),
    worker: intOption('worker', o.worker, 0, workers - 1),
    workers,
    columns,
    loop: boolOption('loop', o.loop),
    position,
    partialInput: boolOption('partialInput', o.partialInput),
    partialFlag: boolOption('partialFlag', o.partialFlag),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- The plan of one epoch for one worker ----

/** Rows [start, end) of one shard; `offset` is the number of this worker's rows before them this epoch. */
export interface PlanUnit {
  readonly shard: ShardInfo;
  readonly start: number;
  readonly end: number;
  readonly offset: number;
}

export interface EpochPlan {
  readonly epoch: number;
  readonly units: readonly PlanUnit[];
  /** Samples this worker yields in the epoch. */
  readonly total: number;
}

type PlanOptions = Pick<ShardStreamOptions, 'seed' | 'shuffleShards' | 'worker' | 'workers'>;

// Salts keep the shard-order and buffer PRNGs of the same (seed, epoch) apart.
const SALT_SHARDS = 0x5348;
const SALT_BUFFER = 0x4255;

/** What one worker reads in one epoch, in order. Shards with no rows take no part. */
export function planEpoch(shards: readonly ShardInfo[], epoch: number, o: PlanOptions): EpochPlan {
  const live = shards.filter((s) => s.rows > 0);
  const order = o.shuffleShards ? permute(live, mulberry32(mix(o.seed, epoch, SALT_SHARDS))) : live;
  const ranges: { shard: ShardInfo; start: number; end: number }[] = [];
  if (order.length >= o.workers) {
    for (let i = o.worker; i < order.length; i += o.workers) ranges.push({ shard: order[i]!, start: 0, end: order[i]!.rows });
  } else {
    for (const shard of order) {
      const start = Math.floor((o.worker * shard.rows) / o.workers);
      const end = Math.floor(((o.worker + 1) * shard.rows) / o.workers);
      if (end > start) ranges.push({ shard, start, end });
    }
  }
  let total = 0;
  const units = ranges.map((r) => {
    const unit = { ...r, offset: total };
    total += r.end - r.start;
    return unit;
  });
  return { epoch, units, total };
}

/** Fisher-Yates with the given PRNG; returns a new array. */
function permute<T>(items: readonly T[], rand: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A 32-bit seed from several integers (murmur3's finaliser after each). */
function mix(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/**
 * The shuffle buffer. Its random draws depend only on how many items went in, so the same class runs on
 * row numbers (to replay a resumed epoch) and on samples (to yield them).
 */
class ShuffleBuffer<T> {
  constructor(
    readonly size: number,
    readonly rand: () => number,
    readonly items: T[] = [],
  ) {}

  /** Adds an item; returns the one that leaves in its place, or undefined while the buffer fills. */
  push(item: T): T | undefined {
    if (this.size === 0) return item;
    if (this.items.length < this.size) {
      this.items.push(item);
      return undefined;
    }
    const k = Math.floor(this.rand() * this.size);
    const out = this.items[k]!;
    this.items[k] = item;
    return out;
  }

  /** After the last push: a random item out, until none is left. */
  pop(): T | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const k = Math.floor(this.rand() * n);
    const out = this.items[k]!;
    const last = this.items.pop()!;
    if (k < n - 1) this.items[k] = last;
    return out;
  }
}

// ---- The stream ----

export interface ShardStream<F extends StreamField = StreamField> extends AsyncIterable<TrainingSample<F>> {
  readonly options: ShardStreamOptions<F>;
  readonly shards: readonly ShardInfo[];
  /** Samples yielded so far: save it with a checkpoint, pass it back as `position` to go on from there. */
  position(): StreamPosition;
  /** Samples this worker yields in an epoch. */
  epochSize(epoch: number): number;
  /** Bytes asked of the file system and rows decoded so far. */
  stats(): Readonly<ReadCounters>;
}

/**
 * Opens the shard folder and checks the options against it; iterating starts reading. A missing folder or
 * one without shards is FILIP_ERR_NO_INPUT; a shard that cannot be read, FILIP_ERR_SHARD naming the file
 * (and row and field for a bad value). Iterate once: the stream is its own iterator.
 */
export async function openShardStream<F extends StreamField = StreamField>(
  dir: string,
  input: ShardStreamInput<F> = {},
): Promise<ShardStream<F>> {
  const options = resolveShardStreamOptions(input);
  const shards = await listShards(dir, { partial: options.partialInput, partialFlag: options.partialFlag });
  if (shards.every((s) => s.rows === 0)) throw new FilipError('FILIP_ERR_NO_INPUT', 'the shards hold no rows', { file: dir });
  const first = planEpoch(shards, options.position.epoch, options);
  if (options.position.consumed > first.total) {
    throw invalid('position.consumed', `at most ${first.total} (samples of worker ${options.worker} in epoch ${first.epoch})`, options.position.consumed);
  }
  if (options.loop && first.total === 0) {
    // Only possible with fewer rows than workers in every shard; every epoch would be empty.
    throw new FilipError('FILIP_ERR_NO_INPUT', `worker ${options.worker} of ${options.workers} gets no rows: the shards hold too few`, { file: dir });
  }
  return new Stream(options, shards);
}

/** The samples of a shard folder, for callers that need no position. */
export async function* streamSamples<F extends StreamField = StreamField>(dir: string, input: ShardStreamInput<F> = {}): AsyncGenerator<TrainingSample<F>> {
  yield* await openShardStream(dir, input);
}

class Stream<F extends StreamField> implements ShardStream<F> {
  readonly options: ShardStreamOptions<F>;
  readonly shards: readonly ShardInfo[];
  readonly #fields: ReadonlySet<StreamField>;
  readonly #counters: ReadCounters = newCounters();
  #position: StreamPosition;
  readonly #samples: AsyncGenerator<TrainingSample<F>>;

  constructor(options: ShardStreamOptions<F>, shards: readonly ShardInfo[]) {
    this.options = options;
    this.shards = shards;
    this.#fields = new Set(options.columns);
    this.#position = options.position;
    this.#samples = this.#run();
  }

  [Symbol.asyncIterator](): AsyncIterator<TrainingSample<F>> {
    return this.#samples;
  }

  position(): StreamPosition {
    return this.#position;
  }

  epochSize(epoch: number): number {
    return planEpoch(this.shards, intOption('epoch', epoch, 0, UINT32_MAX), this.options).total;
  }

  stats(): Readonly<ReadCounters> {
    return { ...this.#counters };
  }

  async *#run(): AsyncGenerator<TrainingSample<F>> {
    let { epoch, consumed } = this.options.position;
    for (;;) {
      yield* this.#epoch(planEpoch(this.shards, epoch, this.options), consumed);
      if (!this.options.loop) return;
      epoch++;
      consumed = 0;
    }
  }

  async *#epoch(plan: EpochPlan, consumed: number): AsyncGenerator<TrainingSample<F>> {
    const { seed, worker, bufferSize } = this.options;
    const rand = mulberry32(mix(seed, plan.epoch, worker, SALT_BUFFER));
    // Replay the buffer on row numbers up to `consumed`: which rows were read, which sit in which slot.
    const replay = new ShuffleBuffer<number>(bufferSize, rand);
    let read = 0;
    for (let out = 0; out < consumed; ) {
      if (read < plan.total) {
        if (replay.push(read++) !== undefined) out++;
      } else {
        replay.pop();
        out++;
      }
    }
    const buffer = new ShuffleBuffer<AnySample>(bufferSize, rand, await this.#fetch(plan, replay.items));
    this.#position = { epoch: plan.epoch, consumed };
    for await (const sample of this.#rows(plan, read)) {
      const out = buffer.push(sample);
      if (out !== undefined) {
        this.#position = { epoch: plan.epoch, consumed: ++consumed };
        yield out as TrainingSample<F>;
      }
    }
    for (let out = buffer.pop(); out !== undefined; out = buffer.pop()) {
      this.#position = { epoch: plan.epoch, consumed: ++consumed };
      yield out as TrainingSample<F>;
    }
  }

  /** This worker's rows of the epoch from row number `from` on, one row group read at a time. */
  async *#rows(plan: EpochPlan, from: number): AsyncGenerator<AnySample> {
    for (const unit of plan.units) {
      const end = unit.offset + unit.end - unit.start;
      if (end <= from) continue;
      const shard = await this.#open(unit.shard);
      const first = unit.start + Math.max(0, from - unit.offset);
      for (let g = 0; g < shard.groupStarts.length - 1; g++) {
        const lo = Math.max(first, shard.groupStarts[g]!);
        const hi = Math.min(unit.end, shard.groupStarts[g + 1]!);
        if (lo >= hi) continue;
        yield* await shard.read(lo, hi);
      }
    }
  }

  /** The samples with the given row numbers of the epoch, in that order: the buffer of a resumed stream. */
  async #fetch(plan: EpochPlan, indices: readonly number[]): Promise<AnySample[]> {
    if (indices.length === 0) return [];
    // Group the wanted rows by shard and row group, then read each group's span once.
    const wanted = new Map<ShardInfo, Map<number, number>>(); // shard -> row in the file -> buffer slot
    for (let slot = 0; slot < indices.length; slot++) {
      const unit = findUnit(plan, indices[slot]!);
      const row = unit.start + indices[slot]! - unit.offset;
      let rows = wanted.get(unit.shard);
      if (!rows) wanted.set(unit.shard, (rows = new Map()));
      rows.set(row, slot);
    }
    const out = new Array<AnySample>(indices.length);
    for (const [info, rows] of wanted) {
      const shard = await this.#open(info);
      const sorted = [...rows.keys()].sort((a, b) => a - b);
      let i = 0;
      while (i < sorted.length) {
        const g = groupOf(shard, sorted[i]!);
        let j = i;
        while (j + 1 < sorted.length && sorted[j + 1]! < shard.groupStarts[g + 1]!) j++;
        const samples = await shard.read(sorted[i]!, sorted[j]! + 1, (row) => rows.has(row));
        for (const sample of samples) out[rows.get(sample.row)!] = sample;
        i = j + 1;
      }
    }
    return out;
  }

  async #open(info: ShardInfo): Promise<ShardReader> {
    const shard = await openShard(info, this.#fields, this.#counters);
    if (shard.rows !== info.rows) {
      throw new FilipError('FILIP_ERR_SHARD', `the shard holds ${shard.rows} samples, the folder's sizes say ${info.rows}`, { file: info.file });
    }
    return shard;
  }
}

function findUnit(plan: EpochPlan, index: number): PlanUnit {
  let lo = 0;
  let hi = plan.units.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (plan.units[mid]!.offset <= index) lo = mid;
    else hi = mid - 1;
  }
  return plan.units[lo]!;
}

function groupOf(shard: ShardReader, row: number): number {
  let g = 0;
  while (shard.groupStarts[g + 1]! <= row) g++;
  return g;
}
