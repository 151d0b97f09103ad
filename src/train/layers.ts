// Transformer building blocks from tfjs-core ops and tf.Variable (there is no tfjs-layers here):
// a seeded parameter store, linear, LayerNorm, exact GELU, multi-head self-attention, the pre-norm
// residual block, and L2 normalisation. Every op used has a gradient in wasm-kernels.ts and a
// kernel on the wasm backend (checked by test/train-backend.test.ts).

import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '../core/random.js';
import { matMulT } from './wasm-kernels.js';

/** Creates named trainable variables from one seed, in creation order, and remembers them. */
export class ParamStore {
  readonly variables: tf.Variable[] = [];
  private readonly random: () => number;

  /** `lean`: linears made from this store multiply by a fresh copy of their weight (see `linear`). */
  constructor(seed: number, readonly lean = false) {
    this.random = mulberry32(seed);
  }

  /** Standard normal draws (Box-Muller on mulberry32), times std. */
  private normals(size: number, std: number): Float32Array {
    const out = new Float32Array(size);
    for (let i = 0; i < size; i += 2) {
      const u = 1 - this.random(); // (0, 1]: log stays finite
      const v = this.random();
      const r = Math.sqrt(-2 * Math.log(u)) * std;
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < size) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }

  private add(name: string, values: Float32Array, shape: number[]): tf.Variable {
    const variable = tf.tidy(() => tf.variable(tf.tensor(values, shape, 'float32'), true, name));
    this.variables.push(variable);
    return variable;
  }

  normal(name: string, shape: number[], std: number): tf.Variable {
    return this.add(name, this.normals(shape.reduce((a, b) => a * b, 1), std), shape);
  }

  constant(name: string, shape: number[], value: number): tf.Variable {
    return this.add(name, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value), shape);
  }
}

export interface Linear {
  readonly w: tf.Variable;
  readonly b?: tf.Variable;
  readonly lean: boolean;
}

export function makeLinear(p: ParamStore, name: string, inDim: number, outDim: number, std: number, bias = true): Linear {
  const w = p.normal(`${name}/w`, [inDim, outDim], std);
  return bias ? { w, b: p.constant(`${name}/b`, [outDim], 0), lean: p.lean } : { w, lean: p.lean };
}

/**
 * x [..., in] -> [..., out]. The wasm backend (XNNPACK) keeps a packed copy of the right operand
 * of a matmul for as long as that tensor lives, which doubles the memory of the weights. A `lean`
 * layer multiplies by a temporary copy instead, freed (with its packed copy) at once: same speed
 * here, half the memory, for forward passes only (a gradient tape keeps the copy until backward).
 */
export function linear(x: tf.Tensor, layer: Linear): tf.Tensor {
  const inDim = x.shape[x.rank - 1]!;
  const outShape = [...x.shape.slice(0, -1), layer.w.shape[1]!];
  const apply = (w: tf.Tensor): tf.Tensor => {
    const y = tf.matMul(tf.reshape(x, [-1, inDim]), w);
    return tf.reshape(layer.b ? tf.add(y, layer.b) : y, outShape);
  };
  return layer.lean ? tf.tidy(() => apply(tf.add(layer.w, 0))) : apply(layer.w);
}

export interface LayerNorm {
  readonly g: tf.Variable;
  readonly b: tf.Variable;
}

export function makeLayerNorm(p: ParamStore, name: string, dim: number): LayerNorm {
  return { g: p.constant(`${name}/g`, [dim], 1), b: p.constant(`${name}/b`, [dim], 0) };
}

const LN_EPS = 1e-5;

/** LayerNorm over the last axis (biased variance, eps 1e-5 as PyTorch). */
export function layerNorm(x: tf.Tensor, ln: LayerNorm): tf.Tensor {
  const axis = x.rank - 1;
  const centred = tf.sub(x, tf.mean(x, axis, true));
  const variance = tf.mean(tf.square(centred), axis, true);
  return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, LN_EPS))), ln.g), ln.b);
}

/** Exact GELU, x * Phi(x), as open_clip's nn.GELU. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** Each vector along the last axis divided by its L2 norm. */
export function l2Normalize(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), x.rank - 1, true), 1e-12)));
}

export interface Block {
  readonly ln1: LayerNorm;
  readonly qkv: Linear;
  readonly out: Linear;
  readonly ln2: LayerNorm;
  readonly fc: Linear;
  readonly proj: Linear;
  readonly heads: number;
}

/**
 * One pre-norm transformer block. Initial scales follow open_clip: attention weights width^-1/2,
 * the two output projections width^-1/2 (2 layers)^-1/2, the MLP input (2 width)^-1/2.
 */
export function makeBlock(p: ParamStore, name: string, width: number, heads: number, layers: number): Block {
  const attnStd = width ** -0.5;
  const projStd = width ** -0.5 * (2 * layers) ** -0.5;
  const fcStd = (2 * width) ** -0.5;
  return {
    ln1: makeLayerNorm(p, `${name}/ln_1`, width),
    qkv: makeLinear(p, `${name}/attn/qkv`, width, 3 * width, attnStd),
    out: makeLinear(p, `${name}/attn/out`, width, width, projStd),
    ln2: makeLayerNorm(p, `${name}/ln_2`, width),
    fc: makeLinear(p, `${name}/mlp/fc`, width, 4 * width, fcStd),
    proj: makeLinear(p, `${name}/mlp/proj`, 4 * width, width, projStd),
    heads,
  };
}

/**
 * Multi-head self-attention. x [B, N, W]; `bias` [N, N] is added to every head's scores (0 where
 * allowed, a large negative where not: the text's causal mask), or null for full attention.
 */
export function selfAttention(x: tf.Tensor, block: Block, bias: tf.Tensor | null): tf.Tensor {
  const [batch, tokens, width] = x.shape as [number, number, number];
  const heads = block.heads;
  const headDim = width / heads;
  const split = (t: tf.Tensor): tf.Tensor => tf.transpose(tf.reshape(t, [batch, tokens, heads, headDim]), [0, 2, 1, 3]);
  const [q, k, v] = tf.split(linear(x, block.qkv), 3, 2).map(split) as [tf.Tensor, tf.Tensor, tf.Tensor];
  let scores = tf.mul(matMulT(q, k, false, true), 1 / Math.sqrt(headDim)); // [B, H, N, N]
  if (bias) scores = tf.add(scores, bias);
  const attended = tf.matMul(tf.softmax(scores), v); // [B, H, N, headDim]
  const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch, tokens, width]);
  return linear(merged, block.out);
}

/** x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
export function blockForward(x: tf.Tensor, block: Block, bias: tf.Tensor | null): tf.Tensor {
  const h = tf.add(x, selfAttention(layerNorm(x, block.ln1), block, bias));
  return tf.add(h, linear(gelu(linear(layerNorm(h, block.ln2), block.fc)), block.proj));
}
