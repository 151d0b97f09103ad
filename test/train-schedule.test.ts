// The learning-rate schedule at its boundaries: 0 before the first update, linear warm-up to the peak,
// cosine to the floor one step after the last (open_clip's cosine_lr), the square-root batch scaling,
// and bad options.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import { learningRate, peakLearningRate, resolveScheduleOptions } from '../src/train/schedule.js';

const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: got ${a}, expected ${b}`);

describe('learningRate', () => {
  const o = resolveScheduleOptions({ baseLr: 1e-3, batch: 2048, warmup: 10, steps: 110, minLr: 0 });
  const peak = 1e-3 * 2; // sqrt(2048 / 512) = 2

  test('the peak is base rate x sqrt(batch / 512)', () => {
    near(peakLearningRate(1e-3, 512), 1e-3, 'batch 512');
    near(peakLearningRate(1e-3, 2048), 2e-3, 'batch 2048');
    near(peakLearningRate(5e-4, 32), 5e-4 / 4, 'batch 32');
  });

  test('warm-up rises linearly from 0 and reaches the peak at the last warm-up step', () => {
    near(learningRate(0, o), 0, 'step 0');
    near(learningRate(1, o), peak / 10, 'step 1');
    near(learningRate(5, o), peak / 2, 'step 5');
    near(learningRate(10, o), peak, 'step 10');
  });

  test('cosine decay: the peak again right after warm-up, half way down at the middle, the last update above the floor', () => {
    near(learningRate(11, o), peak, 'first update of the decay');
    near(learningRate(61, o), peak / 2, 'middle of the decay');
    // open_clip: step k (from 0) of T, warm-up W, runs at 0.5 (1 + cos(pi (k - W) / (T - W))) x peak.
    const openClip = (k: number) => 0.5 * (1 + Math.cos((Math.PI * (k - 10)) / 100)) * peak;
    for (const s of [11, 12, 37, 61, 99, 110]) near(learningRate(s, o), openClip(s - 1), `update ${s} as open_clip's step ${s - 1}`);
    assert.ok(learningRate(110, o) > 0, 'the last update still moves the weights');
    near(learningRate(111, o), 0, 'one past the end');
    near(learningRate(500, o), 0, 'past the end');
    assert.ok(learningRate(12, o) < peak && learningRate(12, o) > learningRate(13, o), 'decreasing after the peak');
  });

  test('a floor above 0 is where the cosine ends', () => {
    const f = resolveScheduleOptions({ baseLr: 1e-3, batch: 512, warmup: 0, steps: 100, minLr: 1e-5 });
    near(learningRate(1, f), 1e-3, 'first step');
    near(learningRate(51, f), 1e-5 + 0.5 * (1e-3 - 1e-5), 'middle');
    near(learningRate(100, f), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + Math.cos((Math.PI * 99) / 100)), 'last update');
    near(learningRate(101, f), 1e-5, 'after the end');
  });

  test('no warm-up starts at the peak; warm-up as long as the run stays at the peak after it', () => {
    const none = resolveScheduleOptions({ baseLr: 1e-3, batch: 512, warmup: 0, steps: 10 });
    near(learningRate(0, none), 0, 'no update yet');
    near(learningRate(1, none), 1e-3, 'the first update at the peak');
    const all = resolveScheduleOptions({ baseLr: 1e-3, batch: 512, warmup: 10, steps: 10 });
    near(learningRate(10, all), 1e-3, 'end of warm-up');
    near(learningRate(12, all), 1e-3, 'after');
  });

  test('it is a pure function of the step: any order, same values', () => {
    const forward = Array.from({ length: 120 }, (_, s) => learningRate(s, o));
    const backward = Array.from({ length: 120 }, (_, i) => learningRate(119 - i, o)).reverse();
    assert.deepEqual(backward, forward);
  });
});

describe('resolveScheduleOptions', () => {
  const bad: [string, Record<string, unknown>, string][] = [
    ['negative base rate', { baseLr: -1 }, 'baseLr'],
    ['batch 0', { batch: 0 }, 'batch'],
    ['fractional warm-up', { warmup: 1.5 }, 'warmup'],
    ['zero steps', { steps: 0 }, 'steps'],
    ['floor above the peak', { baseLr: 1e-4, batch: 512, minLr: 1e-3 }, 'minLr'],
    ['unknown key', { decay: 'linear' }, 'decay'],
  ];
  for (const [what, input, field] of bad) {
    test(`rejects ${what}`, () => {
      assert.throws(
        () => resolveScheduleOptions(input as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }
});
