// Optimisers for the trainer: LAMB (FILIP's choice) and AdamW, written out in tfjs ops so their state
// can be saved in a checkpoint and read back bit for bit. One `step()` applies one update to every
// variable that has a gradient: optional global-norm clipping, Adam moments with bias correction,
// weight decay inside the update (decoupled from the gradient) for variables the model does not exempt,
// and for LAMB a per-variable trust ratio ||w|| / ||update||.

import * as tf from '@tensorflow/tfjs-core';

import { FilipError } from '../core/errors.js';
import { choiceOption, invalid, numberOption, rejectUnknownKeys } from '../core/options.js';

export const OPTIMIZERS = {
  lamb: 'LAMB: Adam moments, decoupled weight decay and a per-variable trust ratio (FILIP, batch 512+)',
  adamw: 'AdamW: Adam moments and decoupled weight decay',
} as const;
export type OptimizerName = keyof typeof OPTIMIZERS;
export const OPTIMIZER_NAMES = Object.keys(OPTIMIZERS) as OptimizerName[];

/** Epsilon of each optimiser when none is given: FILIP's 1e-4 for LAMB, PyTorch's 1e-8 for AdamW. */
export const DEFAULT_EPS: Readonly<Record<OptimizerName, number>> = Object.freeze({ lamb: 1e-4, adamw: 1e-8 });

export interface OptimizerOptions {
  /**
   * Which update rule.
   * @default 'lamb'
   */
  readonly name: OptimizerName;
  /**
   * Decay of the first moment (mean of gradients).
   * @default 0.9
   */
  readonly beta1: number;
  /**
   * Decay of the second moment (mean of squared gradients).
   * @default 0.999
   */
  readonly beta2: number;
  /**
   * Added to sqrt(v) in the denominator. `undefined` picks `DEFAULT_EPS[name]`.
   * @default 1e-4 for lamb, 1e-8 for adamw
   */
  readonly eps: number;
  /**
   * Decoupled weight decay, applied inside the update to variables the no-decay predicate does not
   * exempt. 0 disables it.
   * @default 0.2
   */
  readonly weightDecay: number;
  /**
   * Largest global L2 norm of all gradients together; larger gradients are scaled down to it.
   * 0 disables clipping.
   * @default 0
   */
  readonly clipGradNorm: number;
}

export const DEFAULT_OPTIMIZER_OPTIONS: Omit<OptimizerOptions, 'eps'> & { eps: number | undefined } = Object.freeze({
  name: 'lamb' as OptimizerName,
  beta1: 0.9,
  beta2: 0.999,
  eps: undefined,
  weightDecay: 0.2,
  clipGradNorm: 0,
});

export function resolveOptimizerOptions(partial: Partial<OptimizerOptions> = {}): OptimizerOptions {
  if (partial === null || typeof partial !== 'object') throw invalid('optimizer options', 'an object', partial);
  rejectUnknownKeys('optimizer', partial, DEFAULT_OPTIMIZER_OPTIONS);
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const o = { ...DEFAULT_OPTIMIZER_OPTIONS, ...given };
  const name = choiceOption('name', o.name, OPTIMIZER_NAMES);
  // A beta of 1 would never move the moment and divide by zero in the bias correction.
  const beta1 = numberOption('beta1', o.beta1, 0, 1);
  const beta2 = numberOption('beta2', o.beta2, 0, 1);
  if (beta1 >= 1) throw invalid('beta1', 'a number from 0 to below 1', beta1);
  if (beta2 >= 1) throw invalid('beta2', 'a number from 0 to below 1', beta2);
  const eps = numberOption('eps', o.eps ?? DEFAULT_EPS[name], 0);
  if (eps <= 0) throw invalid('eps', 'a number above 0', eps);
  return Object.freeze({
    name,
    beta1,
    beta2,
    eps,
    weightDecay: numberOption('weightDecay', o.weightDecay, 0),
    clipGradNorm: numberOption('clipGradNorm', o.clipGradNorm, 0),
  });
}

/** Moments of one variable, as plain arrays (checkpoint form). */
export interface SlotState {
  readonly variable: string;
  readonly shape: readonly number[];
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** Everything an optimiser needs to continue where it stopped. */
export interface OptimizerState {
  readonly name: OptimizerName;
  /** Updates applied so far (drives the bias correction). */
  readonly step: number;
  readonly slots: readonly SlotState[];
}

export interface StepResult {
  /** Global L2 norm of the gradients before clipping. */
  readonly gradNorm: number;
}

interface Slot {
  readonly m: tf.Variable;
  readonly v: tf.Variable;
}

export class Optimizer {
  readonly options: OptimizerOptions;
  readonly #variables: readonly tf.Variable[];
  readonly #decays: ReadonlyMap<string, boolean>;
  readonly #slots = new Map<string, Slot>();
  #step = 0;

  /**
   * @param variables the trainable variables, with unique names (gradients are matched by name)
   * @param noDecay true for variables exempt from weight decay (and, for LAMB, from the trust ratio):
   *   biases, norms, embeddings, the temperature. The model's `noDecay`.
   */
  constructor(variables: readonly tf.Variable[], options: OptimizerOptions, noDecay: (v: tf.Variable) => boolean = () => false) {
    this.options = options;
    this.#variables = variables;
    const decays = new Map<string, boolean>();
    for (const variable of variables) {
      if (decays.has(variable.name)) {
        throw new FilipError('FILIP_ERR_INVALID_OPTION', `Two trainable variables share the name ${variable.name}`, {
          field: variable.name,
        });
      }
      decays.set(variable.name, !noDecay(variable));
      // Moments are created now, not lazily, so that the state of a fresh optimiser already has every
      // slot and numTensors stays flat from the first step on.
      this.#slots.set(variable.name, {
        m: tf.variable(tf.zerosLike(variable), false),
        v: tf.variable(tf.zerosLike(variable), false),
      });
    }
    this.#decays = decays;
  }

  get step(): number {
    return this.#step;
  }

  /** Whether weight decay (and the LAMB trust ratio) applies to this variable. */
  decays(variable: tf.Variable): boolean {
    return this.#decays.get(variable.name) ?? false;
  }

  /**
   * One update at learning rate `lr` from `grads` (keyed by variable name, as `tf.variableGrads`
   * returns them). Variables without a gradient are left alone. The caller still owns `grads`.
   */
  applyGradients(grads: tf.NamedTensorMap, lr: number): StepResult {
    const { name, beta1, beta2, eps, weightDecay, clipGradNorm } = this.options;
    this.#step++;
    const t = this.#step;
    const bc1 = 1 - beta1 ** t;
    const bc2 = 1 - beta2 ** t;
    const present = this.#variables.filter((v) => grads[v.name] !== undefined);

    const norm = tf.tidy(() => {
      const gradNorm = globalNorm(present.map((v) => grads[v.name]!));
      // Scale = clip / max(norm, clip): 1 below the threshold, and never a division by zero.
      const scale = clipGradNorm > 0 ? tf.div(clipGradNorm, tf.maximum(gradNorm, clipGradNorm)) : null;
      for (const variable of present) {
        const slot = this.#slots.get(variable.name)!;
        let g = grads[variable.name]!;
        if (scale) g = tf.mul(g, scale);
        const m = tf.add(tf.mul(slot.m, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(slot.v, beta2), tf.mul(tf.square(g), 1 - beta2));
        // Adam direction with bias correction: m_hat / (sqrt(v_hat) + eps).
        let update: tf.Tensor = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), eps));
        const decays = this.#decays.get(variable.name)!;
        if (decays && weightDecay > 0) update = tf.add(update, tf.mul(variable, weightDecay));
        if (name === 'lamb' && decays) update = tf.mul(update, trustRatio(variable, update));
        variable.assign(tf.sub(variable, tf.mul(update, lr)));
        slot.m.assign(m);
        slot.v.assign(v);
      }
      return gradNorm;
    });
    const gradNorm = norm.dataSync()[0]!;
    norm.dispose();
    return { gradNorm };
  }

  /** The moments and step as plain arrays, for a checkpoint. */
  exportState(): OptimizerState {
    const slots: SlotState[] = [];
    for (const variable of this.#variables) {
      const slot = this.#slots.get(variable.name)!;
      slots.push({
        variable: variable.name,
        shape: [...variable.shape],
        m: Float32Array.from(slot.m.dataSync()),
        v: Float32Array.from(slot.v.dataSync()),
      });
    }
    return { name: this.options.name, step: this.#step, slots };
  }

  /** Restores a state from `exportState()`; every variable must have a slot of the same shape. */
  importState(state: OptimizerState): void {
    if (state.name !== this.options.name) {
      throw new FilipError(
        'FILIP_ERR_CHECKPOINT',
        `the checkpoint's optimizer is ${state.name}, this run's is ${this.options.name}`,
        { field: 'optimizer' },
      );
    }
    const byName = new Map(state.slots.map((s) => [s.variable, s]));
    for (const variable of this.#variables) {
      const saved = byName.get(variable.name);
      if (!saved) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', 'the checkpoint has no optimizer state for this variable', {
          field: variable.name,
        });
      }
      if (saved.shape.join('x') !== variable.shape.join('x') || saved.m.length !== variable.size || saved.v.length !== variable.size) {
        throw new FilipError(
          'FILIP_ERR_CHECKPOINT',
          `optimizer state has shape [${saved.shape}], the variable [${variable.shape}]`,
          { field: variable.name },
        );
      }
    }
    for (const variable of this.#variables) {
      const saved = byName.get(variable.name)!;
      const slot = this.#slots.get(variable.name)!;
      tf.tidy(() => {
        slot.m.assign(tf.tensor(saved.m, variable.shape, 'float32'));
        slot.v.assign(tf.tensor(saved.v, variable.shape, 'float32'));
      });
    }
    this.#step = state.step;
  }

  dispose(): void {
    for (const slot of this.#slots.values()) {
      slot.m.dispose();
      slot.v.dispose();
    }
    this.#slots.clear();
  }
}

/** sqrt of the sum of squares of every element of every tensor. */
export function globalNorm(tensors: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    if (tensors.length === 0) return tf.scalar(0);
    const squares = tensors.map((t) => tf.sum(tf.square(t)));
    return tf.sqrt(tf.addN(squares)) as tf.Scalar;
  });
}

/**
 * LAMB's layer adaptation ||w|| / ||update||, with the usual guards: 1 when either norm is 0 (a
 * fresh zero-initialised variable, or an update that vanished), so the step never becomes 0 or NaN.
 */
function trustRatio(w: tf.Tensor, update: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    // sqrt(sum(x^2)) rather than tf.norm, whose abs/pow route has more kernels to run per variable.
    const wNorm = tf.sqrt(tf.sum(tf.square(w)));
    const uNorm = tf.sqrt(tf.sum(tf.square(update)));
    const ok = tf.logicalAnd(tf.greater(wNorm, 0), tf.greater(uNorm, 0));
    // The division happens on both branches of `where`: give it a safe denominator.
    const safe = tf.where(ok, uNorm, tf.onesLike(uNorm));
    return tf.where(ok, tf.div(wNorm, safe), tf.onesLike(wNorm)) as tf.Scalar;
  });
}
