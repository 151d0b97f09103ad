// The learning-rate schedule: a pure function of the step, so a resumed run gets exactly the rates an
// uninterrupted one would have. Linear warm-up from 0 to the peak, then cosine decay to a floor.
//
// Steps count updates from 1: `learningRate(s, ...)` is the rate of the s-th update. With warm-up W and
// T steps in all, updates W and W + 1 run at the peak, and the cosine reaches the floor one step after
// the last update, as open_clip's cosine_lr does (its steps count from 0): update T runs just above the
// floor, so with the usual floor of 0 no update is spent at a rate of 0. Step 0 (no update yet) is 0.

import { intOption, invalid, numberOption, rejectUnknownKeys } from '../core/options.js';

/** The batch size at which the peak rate equals the base rate (FILIP/CLIP's square-root scaling rule). */
export const REFERENCE_BATCH = 512;

export interface ScheduleOptions {
  /**
   * Base learning rate, before scaling by the batch size.
   * @default 5e-4
   */
  readonly baseLr: number;
  /**
   * Batch size; the peak rate is `baseLr * sqrt(batch / 512)`.
   * @default 32
   */
  readonly batch: number;
  /**
   * Updates of linear warm-up from 0 to the peak. 0 starts at the peak.
   * @default 100
   */
  readonly warmup: number;
  /**
   * Updates in the whole run; the cosine reaches the floor one step after the last.
   * @default 1000
   */
  readonly steps: number;
  /**
   * Rate at the end of the cosine, as an absolute learning rate.
   * @default 0
   */
  readonly minLr: number;
}

export const DEFAULT_SCHEDULE_OPTIONS: ScheduleOptions = Object.freeze({
  baseLr: 5e-4,
  batch: 32,
  warmup: 100,
  steps: 1000,
  minLr: 0,
});

export function resolveScheduleOptions(partial: Partial<ScheduleOptions> = {}): ScheduleOptions {
  if (partial === null || typeof partial !== 'object') throw invalid('schedule options', 'an object', partial);
  rejectUnknownKeys('schedule', partial, DEFAULT_SCHEDULE_OPTIONS);
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const o: ScheduleOptions = { ...DEFAULT_SCHEDULE_OPTIONS, ...given };
  const resolved: ScheduleOptions = {
    baseLr: numberOption('baseLr', o.baseLr, 0),
    batch: intOption('batch', o.batch, 1),
    warmup: intOption('warmup', o.warmup, 0),
    steps: intOption('steps', o.steps, 1),
    minLr: numberOption('minLr', o.minLr, 0),
  };
  const peak = peakLearningRate(resolved.baseLr, resolved.batch);
  if (resolved.minLr > peak) throw invalid('minLr', `at most the peak rate ${peak}`, resolved.minLr);
  return Object.freeze(resolved);
}

/** Peak rate for a batch size: `baseLr * sqrt(batch / 512)`. */
export function peakLearningRate(baseLr: number, batch: number): number {
  return baseLr * Math.sqrt(batch / REFERENCE_BATCH);
}

/** Learning rate of update `step` (counted from 1). Past `steps` it stays at the floor. */
export function learningRate(step: number, o: ScheduleOptions): number {
  const peak = peakLearningRate(o.baseLr, o.batch);
  if (step <= 0) return 0;
  if (step <= o.warmup) return (peak * step) / o.warmup;
  const decaySteps = o.steps - o.warmup;
  if (decaySteps <= 0) return peak;
  const progress = Math.min((step - o.warmup - 1) / decaySteps, 1);
  return o.minLr + 0.5 * (peak - o.minLr) * (1 + Math.cos(Math.PI * progress));
}
