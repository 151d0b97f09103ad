// The FILIP training loop, top to bottom: options (or a checkpoint's), backend, tokenizer, model,
// optimiser, data; then for each step: wait for the prefetched batch, compute the loss and its gradients
// with tf.variableGrads, apply the optimiser at the schedule's rate, free every tensor, log; save a
// checkpoint every N steps, at the end, and when asked to stop (the CLI asks on SIGINT).

import { appendFile, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';

import { FilipError } from '../core/errors.js';
import { autoAugment } from '../augment/autoaugment.js';
import { openShardStream, shardFolderNames, unfinishedRun, type StreamPosition } from '../data/index.js';
import { selectBackend, type BackendSelection } from './backend.js';
import { loadCheckpoint, readCheckpointConfig, saveCheckpoint, type Checkpoint, type NamedArray } from './checkpoint.js';
import { resolveTrainOptions, resumeTrainOptions, type TrainInput, type TrainOptions } from './config.js';
import { BatchLoader, resolveBatchOptions, type Batch } from './data.js';
import { clipLoss, filipLoss, MAX_LOGIT_SCALE } from './loss.js';
import { FilipModel, modelConfig, validateModelConfig, type ModelConfig } from './model.js';
import { Optimizer, resolveOptimizerOptions } from './optim.js';
import { learningRate, resolveScheduleOptions, type ScheduleOptions } from './schedule.js';
import { trainTokenizer } from './bpe-train.js';
import { BpeTokenizer } from './tokenizer.js';
import { makeDir } from '../core/make-dir.js';

export const TRAIN_LOG = 'train_log.jsonl';

/** What a checkpoint's `config` holds: enough to rebuild the model and continue the run. */
export interface SavedConfig {
  readonly model: ModelConfig;
  readonly train: TrainOptions;
}

/** One line of train_log.jsonl. */
export interface LogRecord {
  readonly step: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  /** exp(logit scale): the inverse temperature. */
  readonly scale: number;
  /** Pairs per second over the steps since the previous record (data wait included). */
  readonly pairsPerSec: number;
  readonly epoch: number;
  readonly seconds: number;
}

export interface TrainResult {
  readonly options: TrainOptions;
  readonly model: ModelConfig;
  readonly backend: BackendSelection;
  /** Updates applied when the run ended. */
  readonly step: number;
  /** The step it started from (0, or the checkpoint's). */
  readonly startStep: number;
  /** True when it ended early on `requestStop()`. */
  readonly stopped: boolean;
  /** Loss of every step run in this session, in order. */
  readonly losses: readonly number[];
  /** Pairs per second over the whole session (data wait included, first step excluded). */
  readonly pairsPerSec: number;
  readonly checkpoint: string | null;
  readonly parameters: number;
}

export interface TrainerIo {
  /** Receives the backend line, log lines and the status line. */
  readonly stream: NodeJS.WritableStream;
  /** True when `stream` is a terminal (redrawn status line); log lines otherwise. */
  readonly isTty?: boolean;
}

export class Trainer {
  readonly #given: TrainInput | Partial<TrainOptions>;
  readonly #io: TrainerIo;
  #stopRequested = false;

  /**
   * @param given the options the user set. Without `resume`, `shards` and `out` are required and the
   *   rest defaults; with `resume`, only explicitly given values (no defaults applied) are passed, so a
   *   conflict with the checkpoint can be told from a default.
   */
  constructor(given: TrainInput | Partial<TrainOptions>, io: TrainerIo) {
    this.#given = given;
    this.#io = io;
  }

  /** Ends the run after the current step, with a checkpoint. Safe to call from a signal handler. */
  requestStop(): void {
    this.#stopRequested = true;
  }

  get stopRequested(): boolean {
    return this.#stopRequested;
  }

  async run(): Promise<TrainResult> {
    const write = (line: string) => this.#io.stream.write(`${line}\n`);

    // ---- options: fresh, or the checkpoint's with run-time settings on top ----
    let options: TrainOptions;
    let model: ModelConfig | undefined;
    let checkpoint: (Checkpoint<SavedConfig> & { path: string }) | undefined;
    if (this.#given.resume) {
      const head = await readCheckpointConfig<SavedConfig>(this.#given.resume);
      const saved = head.config;
      if (!saved || typeof saved !== 'object' || !saved.train || !saved.model) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', 'the checkpoint has no train/model config', { file: head.path, field: 'config' });
      }
      // A resumed run writes into the run folder it came from, unless told otherwise.
      const runDir = basename(head.path).startsWith('ckpt-') ? dirname(head.path) : this.#given.resume;
      options = resumeTrainOptions(saved.train, { out: runDir, ...this.#given }, head.path);
      model = validateModelConfig(saved.model);
      checkpoint = await loadCheckpoint<SavedConfig>(head.path);
    } else {
      options = resolveTrainOptions(this.#given as TrainInput);
    }
    // --init: another run's weights, model shape and tokenizer; everything else is this run's.
    let init: (Checkpoint<SavedConfig> & { path: string }) | undefined;
    if (!checkpoint && options.init !== null) {
      init = await loadCheckpoint<SavedConfig>(options.init);
      const saved = init.config;
      if (!saved || typeof saved !== 'object' || !saved.model) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', 'the checkpoint has no model config', { file: init.path, field: 'config' });
      }
      model = validateModelConfig(saved.model);
      const given = this.#given as Partial<TrainOptions>;
      if (given.preset !== undefined && given.preset !== model.preset) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', `the weights of --init are a ${model.preset} model, this run asks for ${given.preset}`, { file: init.path, field: 'preset' });
      }
      const actual: Record<string, number> = { imageSize: model.imageSize, vocabSize: model.text.vocabSize, contextLength: model.text.contextLength };
      for (const [key, value] of Object.entries(given.modelOverrides ?? {})) {
        if (actual[key] !== value) {
          throw new FilipError('FILIP_ERR_CHECKPOINT', `the weights of --init have ${key} ${actual[key]}, this run asks for ${value}`, { file: init.path, field: 'modelOverrides' });
        }
      }
      options = Object.freeze({ ...options, preset: model.preset as TrainOptions['preset'] });
    }
    // Before anything is written: a shards folder whose filip-data run has not finished is refused here
    // (FILIP_ERR_INPUT_UNFINISHED), not after a tokenizer was learned from part of it.
    const unfinished = unfinishedRun(await shardFolderNames(options.shards, { partial: options.partialInput, partialFlag: true }));
    if (!checkpoint) await claimRunFolder(options.out, options.overwrite);
    await makeDir(options.out, 'out');

    // ---- backend ----
    const backend = await selectBackend(options.backend);
    write(backend.reason);

    // ---- tokenizer: from the checkpoint, a merges file, or learned from the shards' captions ----
    let tokenizer: BpeTokenizer;
    if (checkpoint) tokenizer = BpeTokenizer.fromJSON(checkpoint.tokenizer);
    else if (init) tokenizer = BpeTokenizer.fromJSON(init.tokenizer);
    else if (options.tokenizer) tokenizer = await BpeTokenizer.fromMergesFile(options.tokenizer);
    else tokenizer = await this.#learnTokenizer(options, write);

    // ---- model, optimiser, schedule ----
    model ??= modelConfig(options.preset, { ...options.modelOverrides, vocabSize: tokenizer.vocabSize });
    if (model.text.vocabSize < tokenizer.vocabSize) {
      throw new FilipError('FILIP_ERR_CHECKPOINT', `the model's vocabulary (${model.text.vocabSize}) is smaller than the tokenizer's (${tokenizer.vocabSize})`, { field: 'vocabSize' });
    }
    const net = new FilipModel(model, options.seed);
    const optimizer = new Optimizer(
      net.variables,
      resolveOptimizerOptions({ name: options.optimizer, weightDecay: options.weightDecay, clipGradNorm: options.clipGrad }),
      (v) => net.noDecay(v),
    );
    const schedule = resolveScheduleOptions({ baseLr: options.lr, batch: options.batch, warmup: options.warmup, steps: options.steps, minLr: options.minLr });
    const stable = (name: string) => name.slice(net.scope.length);
    let step = 0;
    if (checkpoint) {
      restoreWeights(net, checkpoint.weights);
      const byStable = new Map(net.variables.map((v) => [stable(v.name), v.name]));
      optimizer.importState({
        ...checkpoint.optimizer,
        slots: checkpoint.optimizer.slots.map((s) => ({ ...s, variable: byStable.get(s.variable) ?? s.variable })),
      });
      step = checkpoint.step;
      await trimLog(join(options.out, TRAIN_LOG), step);
      write(`resuming from ${checkpoint.path} at step ${step}`);
    } else {
      if (init) {
        restoreWeights(net, init.weights);
        write(`weights from ${init.path} (step ${init.step} of that run); new schedule and optimiser`);
      }
      await writeFile(join(options.out, TRAIN_LOG), '');
    }
    const saved: SavedConfig = { model, train: options };
    await writeFile(join(options.out, 'config.json'), `${JSON.stringify(saved, null, 2)}\n`);
    write(
      `model ${model.preset}: ${(net.parameterCount / 1e6).toFixed(2)}M parameters, ${model.imageSize}px images, ` +
        `${model.text.contextLength} tokens; ${options.optimizer}, peak lr ${learningRate(Math.max(schedule.warmup, 1), schedule).toExponential(2)}, ` +
        `${options.loss} loss, batch ${options.batch}, steps ${step + 1}..${options.steps}`,
    );

    // ---- data ----
    const stream = await openShardStream(options.shards, {
      seed: options.seed,
      bufferSize: options.shuffleBuffer,
      // Shards without back-translations (ingest or filter output) give empty lists.
      columns: ['caption', 'image', 'backTranslations'],
      loop: true,
      partialInput: options.partialInput,
      partialFlag: true,
      ...(checkpoint?.dataPosition ? { position: checkpoint.dataPosition as StreamPosition } : {}),
    });
    const pairs = stream.shards.reduce((a, sh) => a + sh.rows, 0);
    if (unfinished) {
      write(`warning: the run writing ${options.shards} has not finished: training on the ${pairs} pairs of the ${stream.shards.length} shards it has committed (--partial-input)`);
    }
    if (pairs < options.batch) {
      // The stream loops, so a batch holds the same pairs more than once: each copy is a negative of
      // its twin, and the contrastive loss pushes apart what is the same.
      write(`warning: the shards hold ${pairs} pairs, fewer than the batch of ${options.batch}: every batch repeats pairs; lower --batch to ${pairs} or less`);
    }
    const policy = options.augment;
    const loader = new BatchLoader<StreamPosition>(
      stream,
      step + 1,
      resolveBatchOptions({ batch: options.batch, imageSize: model.imageSize, contextLength: model.text.contextLength, seed: options.seed }),
      {
        tokenize: (texts, length) => tokenizer.tokenize(texts, length),
        ...(policy === 'none' ? {} : { augment: (img, rng) => autoAugment(img, rng, policy) }),
      },
    );

    // ---- the loop ----
    const logPath = join(options.out, TRAIN_LOG);
    const losses: number[] = [];
    const startStep = step;
    let lastSaved: string | null = null;
    let position: StreamPosition = stream.position();
    const started = performance.now();
    let timedFrom = started;
    let timedPairs = 0;
    let windowStart = started;
    let windowPairs = 0;
    const save = async (lastLoss: number | undefined) => {
      lastSaved = await saveCheckpoint(
        options.out,
        {
          step,
          config: saved,
          weights: net.variables.map((v) => ({ name: stable(v.name), shape: v.shape, data: Float32Array.from(v.dataSync()) })),
          optimizer: (() => {
            const state = optimizer.exportState();
            return { ...state, slots: state.slots.map((s) => ({ ...s, variable: stable(s.variable) })) };
          })(),
          tokenizer: tokenizer.toJSON(),
          dataPosition: position,
          info: { loss: lastLoss ?? null, backend: backend.backend, savedAt: new Date().toISOString() },
        },
        { keep: options.keepCheckpoints },
      );
    };
    const status = this.#io.isTty ? (text: string) => this.#io.stream.write(`\r\x1b[K${text}`) : () => undefined;

    try {
      while (step < options.steps && !this.#stopRequested) {
        const batch = await loader.next();
        if (!batch) throw new FilipError('FILIP_ERR_NO_INPUT', 'the shard stream ended', { file: options.shards });
        step = batch.step;
        const lr = learningRate(step, schedule);
        const { loss, gradNorm, scale } = trainStep(net, optimizer, batch, lr, options);
        losses.push(loss);
        position = batch.position;
        if (!Number.isFinite(loss)) {
          throw new FilipError('FILIP_ERR_INVALID_OPTION', `the loss is ${loss} at step ${step}: lower --lr or set --clip-grad`, { field: 'lr' });
        }
        const now = performance.now();
        // The first step of a session pays for kernel compilation and warm-up: leave it out of rates.
        if (step === startStep + 1) {
          timedFrom = now;
          windowStart = now;
        } else {
          timedPairs += batch.size;
          windowPairs += batch.size;
        }
        const windowRate = windowPairs / Math.max((now - windowStart) / 1000, 1e-9);
        status(`step ${step}/${options.steps}  loss ${loss.toFixed(4)}  lr ${lr.toExponential(2)}  ${windowPairs > 0 ? windowRate.toFixed(1) : '-'} pairs/s`);
        if (step % options.logEvery === 0 || step === options.steps) {
          const record: LogRecord = {
            step,
            loss,
            lr,
            gradNorm,
            scale,
            pairsPerSec: windowPairs > 0 ? windowRate : 0,
            epoch: batch.position.epoch,
            seconds: (now - started) / 1000,
          };
          await appendFile(logPath, `${JSON.stringify(record)}\n`);
          if (this.#io.isTty) this.#io.stream.write('\r\x1b[K');
          write(
            `step ${step}/${options.steps}  loss ${loss.toFixed(4)}  lr ${lr.toExponential(2)}  grad ${gradNorm.toFixed(3)}  ` +
              // The first step of a session is left out of rates: nothing to show yet.
              `scale ${scale.toFixed(2)}  ${windowPairs > 0 ? record.pairsPerSec.toFixed(1) : '-'} pairs/s`,
          );
          windowStart = now;
          windowPairs = 0;
        }
        if (options.saveEvery > 0 && step % options.saveEvery === 0 && step < options.steps) await save(loss);
      }
      if (step > startStep || !lastSaved) await save(losses.at(-1));
    } finally {
      await loader.close();
      optimizer.dispose();
      net.dispose();
    }
    if (this.#io.isTty) this.#io.stream.write('\r\x1b[K');
    const pairsPerSec = timedPairs / Math.max((performance.now() - timedFrom) / 1000, 1e-9);
    if (this.#stopRequested && step < options.steps) write(`stopped at step ${step}; continue with --resume ${options.out}`);
    if (loader.skipped > 0) write(`skipped ${loader.skipped} pairs whose image does not decode (${loader.skippedExamples.join('; ')}${loader.skipped > loader.skippedExamples.length ? '; ...' : ''})`);
    write(`saved ${lastSaved} (step ${step}); ${pairsPerSec.toFixed(1)} pairs/s on ${backend.backend}`);
    return {
      options,
      model,
      backend,
      step,
      startStep,
      stopped: this.#stopRequested && step < options.steps,
      losses,
      pairsPerSec,
      checkpoint: lastSaved,
      parameters: net.parameterCount,
    };
  }

  async #learnTokenizer(options: TrainOptions, write: (line: string) => void): Promise<BpeTokenizer> {
    const file = join(options.out, 'tokenizer.merges.txt');
    write(`learning a tokenizer (vocabulary up to ${options.vocabSize}) from the captions of ${options.shards}`);
    const learned = await trainTokenizer({ shards: options.shards, out: file, vocabSize: options.vocabSize });
    write(`tokenizer: ${learned.merges.length} merges, vocabulary ${learned.vocabSize} (${learned.stoppedBy}), saved to ${file}`);
    return BpeTokenizer.fromMerges(learned.merges, { maxMerges: learned.merges.length });
  }
}

/**
 * One update: loss and gradients of every variable, optimiser step, temperature clamp. Every tensor
 * made here is disposed before it returns (numTensors does not grow from step to step).
 */
export function trainStep(
  net: FilipModel,
  optimizer: Optimizer,
  batch: Batch,
  lr: number,
  o: Pick<TrainOptions, 'loss' | 'topk'>,
): { loss: number; gradNorm: number; scale: number } {
  const B = batch.size;
  const S = batch.imageSize;
  // Cut the padding columns no row uses: causal attention makes the real tokens' outputs the same.
  const L = batch.tokens.contextLength;
  let used = 1;
  for (let b = 0; b < B; b++) used = Math.max(used, batch.tokens.lengths[b]!);
  const ids = new Int32Array(B * used);
  for (let b = 0; b < B; b++) ids.set(batch.tokens.ids.subarray(b * L, b * L + used), b * used);

  const inputs = {
    images: tf.tensor4d(batch.pixels, [B, S, S, 3], 'float32'),
    ids: tf.tensor2d(ids, [B, used], 'int32'),
    lengths: tf.tensor1d(batch.tokens.lengths, 'int32'),
  };
  try {
    const { value, grads } = tf.variableGrads(() => {
      const image = net.encodeImage(inputs.images);
      const text = net.encodeText(inputs.ids, inputs.lengths);
      return o.loss === 'clip'
        ? clipLoss(image.global, text.global, net.logitScale)
        : filipLoss(image, text, net.logitScale, { topK: o.topk });
    }, net.variables);
    const loss = value.dataSync()[0]!;
    const { gradNorm } = optimizer.applyGradients(grads, lr);
    tf.dispose([value, ...Object.values(grads)]);
    tf.tidy(() => net.logitScale.assign(tf.clipByValue(net.logitScale, 0, MAX_LOGIT_SCALE)));
    return { loss, gradNorm, scale: Math.exp(net.logitScale.dataSync()[0]!) };
  } finally {
    tf.dispose(Object.values(inputs));
  }
}

function restoreWeights(net: FilipModel, weights: readonly NamedArray[]): void {
  const map = new Map<string, tf.Tensor>();
  try {
    for (const w of weights) map.set(w.name, tf.tensor(w.data, [...w.shape], 'float32'));
    net.setWeights(map);
  } finally {
    tf.dispose([...map.values()]);
  }
}

/** Drops log records past `step` (written after the checkpoint by a run that was killed). */
async function trimLog(path: string, step: number): Promise<void> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return;
  }
  const kept = text
    .split('\n')
    .filter((line) => {
      if (line.trim() === '') return false;
      try {
        return (JSON.parse(line) as LogRecord).step <= step;
      } catch {
        return false; // a line torn by the kill
      }
    })
    .map((line) => `${line}\n`)
    .join('');
  await writeFile(path, kept);
}

/**
 * A new run's folder: refused when it holds a training run (FILIP_ERR_RESUME_MISMATCH naming what is
 * there), unless `overwrite`, which removes that run's files (checkpoints, log, config, merges) and
 * nothing else. A file where the folder should be is FILIP_ERR_INVALID_OPTION on `out`.
 */
async function claimRunFolder(out: string, overwrite: boolean): Promise<void> {
  const info = await stat(out).catch(() => undefined);
  if (info === undefined) return;
  if (!info.isDirectory()) throw new FilipError('FILIP_ERR_INVALID_OPTION', 'the run folder is a file', { field: 'out', file: out });
  const names = await readdir(out);
  const ours = names.filter((n) => /^ckpt-\d+$/.test(n) || n === TRAIN_LOG || n === 'config.json' || n === 'tokenizer.merges.txt');
  if (ours.length === 0) return;
  if (!overwrite) {
    const shown = ours.sort().slice(-3).join(', ');
    throw new FilipError(
      'FILIP_ERR_RESUME_MISMATCH',
      `the run folder already holds a training run (${shown}); --resume ${out} continues it, --overwrite starts it again`,
      { file: out, field: 'out' },
    );
  }
  for (const n of ours) await rm(join(out, n), { recursive: true, force: true });
}
