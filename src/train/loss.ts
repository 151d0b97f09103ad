// FILIP's token-wise late-interaction contrastive loss, and CLIP's global one for comparison.
//
// Inputs are L2-normalised tokens: image patches x [Bi, P, D] (no [CLS]) and text tokens
// y [Bt, L, D] with a padding mask m [Bt, L] (1 real, 0 padding). With s(i,p,t,r) = <x_ip, y_tr>:
//
//   image i -> text t:  a(i,p,t) = max over real tokens r of t of s(i,p,t,r)
//                       i2t(i,t) = mean over the selected patches p of i of a(i,p,t)
//   text t -> image i:  b(t,r,i) = max over patches p of i of s(i,p,t,r)
//                       t2i(t,i) = mean over the selected real tokens r of t of b(t,r,i)
//
// Padded tokens never win a max (they get -1e4 first) and are never selected for a mean.
// Token selection (the paper's top-k, `topK` = fraction k): each image keeps its
// max(1, ceil(k P)) patches whose best similarity over the whole batch, max over t of a(i,p,t), is
// largest; each text keeps its max(1, ceil(k n_t)) real tokens (n_t = its real-token count) whose
// best similarity over the batch, max over i of b(t,r,i), is largest. Ties go to the earlier
// position. The selection is made once per image and per text, the same for every pair, and no
// gradient flows through it (it is piecewise constant). topK = 1 keeps every (real) token.
//
// Loss: logits = exp(min(logit_scale, ln 100)) * similarity; cross-entropy with the matching pair on
// the diagonal, image-to-text normalised over texts and text-to-image over images; the mean of the
// two directions.

import * as tf from '@tensorflow/tfjs-core';
import { invalid, numberOption } from '../core/options.js';
import { matMulT, registerTrainingGradients } from './wasm-kernels.js';

registerTrainingGradients();

/** CLIP clamps the learned scale at 100, i.e. the log scale at ln 100. */
export const MAX_LOGIT_SCALE = Math.log(100);
/** Added to padded tokens' similarities before a max; any real similarity (in [-1, 1]) beats it. */
const PAD_PENALTY = -1e4;

export interface TokenwiseOptions {
  /**
   * Fraction of each image's patches and of each text's real tokens kept for the means, ranked by
   * their best similarity over the batch. 1 keeps them all.
   * @default 1 for tokenwiseSimilarity, 0.25 for filipLoss (the paper's setting)
   */
  readonly topK?: number;
}

function resolveTopK(value: number | undefined, fallback: number): number {
  const k = value === undefined ? fallback : numberOption('topK', value, 0);
  if (k <= 0) throw invalid('topK', 'a fraction in (0, 1]', k);
  if (k > 1) throw invalid('topK', 'a fraction in (0, 1]', k);
  return k;
}

/**
 * 1 for the `ceil(k n)` (at least 1) entries of each row with the highest score, among the first n
 * where `valid` (1/0) marks them; 0 elsewhere. Rows [R, N]; `valid` null means all N are valid.
 * Piecewise constant, so it passes no gradient.
 */
const selectTop = (k: number) =>
  tf.customGrad((...inputs) => {
    const [scores, valid] = inputs as [tf.Tensor, tf.Tensor];
    const [rows, n] = scores.shape as [number, number];
    const value = tf.tidy(() => {
      const masked = tf.where(tf.greater(valid, 0), scores, tf.fill([rows, n], -Infinity));
      // rank(r, j) = #{q : s_q > s_j} + #{q < j : s_q = s_j}  (0 = best; ties to the earlier)
      const sj = tf.expandDims(masked, 2); // [R, N(j), 1]
      const sq = tf.expandDims(masked, 1); // [R, 1, N(q)]
      const upper = tf.linalg.bandPart(tf.ones([n, n]), 0, -1); // [j, q]: 1 where q >= j
      const qBeforeJ = tf.sub(1, upper); // 1 where q < j
      const beats = tf.add(
        tf.cast(tf.greater(sq, sj), 'float32'),
        tf.mul(tf.cast(tf.equal(sq, sj), 'float32'), qBeforeJ),
      );
      const rank = tf.sum(beats, 2); // [R, N]
      const counts = tf.sum(valid, 1, true); // [R, 1]
      // ceil(k n), at least 1; the 1e-4 keeps float32 rounding (0.3 * 10 = 3.0000001) from adding one
      const keep = tf.maximum(tf.ceil(tf.sub(tf.mul(counts, k), 1e-4)), 1);
      return tf.mul(tf.cast(tf.less(rank, keep), 'float32'), valid);
    });
    return { value, gradFunc: () => [tf.zerosLike(scores), tf.zerosLike(valid)] };
  });

/**
 * Token-wise similarities of every image with every text. Returns i2t [Bi, Bt] and t2i [Bt, Bi].
 * patches [Bi, P, D] and tokens [Bt, L, D] L2-normalised; mask [Bt, L] 1 for real tokens (each text
 * needs at least one).
 */
export function tokenwiseSimilarity(
  imgPatches: tf.Tensor3D,
  txtTokens: tf.Tensor3D,
  txtMask: tf.Tensor2D,
  opts: TokenwiseOptions = {},
): { i2t: tf.Tensor2D; t2i: tf.Tensor2D } {
  const k = resolveTopK(opts.topK, 1);
  const [bi, p, d] = imgPatches.shape;
  const [bt, l, d2] = txtTokens.shape;
  if (d !== d2) throw invalid('txtTokens', `tokens of ${d} dimensions like the patches`, txtTokens.shape);
  if (txtMask.shape[0] !== bt || txtMask.shape[1] !== l) throw invalid('txtMask', `a [${bt}, ${l}] tensor`, txtMask.shape);
  return tf.tidy(() => {
    const mask = tf.cast(txtMask, 'float32');
    // s[(i,p), (t,r)] for all pairs in one matmul, then [Bi, P, Bt, L]
    const s = tf.reshape(matMulT(tf.reshape(imgPatches, [bi * p, d]), tf.reshape(txtTokens, [bt * l, d]), false, true), [bi, p, bt, l]);
    const sMasked = tf.add(s, tf.reshape(tf.mul(tf.sub(1, mask), PAD_PENALTY), [1, 1, bt, l]));
    const a = tf.max(sMasked, 3); // [Bi, P, Bt]: each patch's best real token of each text
    const b = tf.transpose(tf.max(s, 1), [1, 2, 0]); // [Bt, L, Bi]: each token's best patch of each image

    let patchWeights: tf.Tensor; // [Bi, P], rows sum to 1
    let tokenWeights: tf.Tensor; // [Bt, L], rows sum to 1
    if (k === 1) {
      patchWeights = tf.fill([bi, p], 1 / p);
      tokenWeights = tf.div(mask, tf.sum(mask, 1, true));
    } else {
      const select = selectTop(k);
      const patchSel = select(tf.max(a, 2), tf.ones([bi, p])) as tf.Tensor;
      const tokenSel = select(tf.max(b, 2), mask) as tf.Tensor;
      patchWeights = tf.div(patchSel, tf.sum(patchSel, 1, true));
      tokenWeights = tf.div(tokenSel, tf.sum(tokenSel, 1, true));
    }
    const i2t = tf.sum(tf.mul(a, tf.expandDims(patchWeights, 2)), 1) as tf.Tensor2D; // [Bi, Bt]
    const t2i = tf.sum(tf.mul(b, tf.expandDims(tokenWeights, 2)), 1) as tf.Tensor2D; // [Bt, Bi]
    return { i2t, t2i };
  });
}

/** exp of the log scale, clamped at 100 (no gradient past the clamp, as CLIP's clamp). */
function scale(logitScale: tf.Tensor): tf.Tensor {
  return tf.exp(tf.minimum(logitScale, MAX_LOGIT_SCALE));
}

/** Mean cross-entropy of each row's logits against the diagonal (row i's match is column i). */
function diagonalCrossEntropy(logits: tf.Tensor2D): tf.Scalar {
  const n = logits.shape[0];
  const eye = tf.eye(n, logits.shape[1]);
  return tf.neg(tf.div(tf.sum(tf.mul(tf.logSoftmax(logits), eye)), n)) as tf.Scalar;
}

function symmetric(i2t: tf.Tensor2D, t2i: tf.Tensor2D, logitScale: tf.Tensor): tf.Scalar {
  if (i2t.shape[0] !== i2t.shape[1]) throw invalid('batch', 'as many texts as images (pairs)', i2t.shape);
  const sc = scale(logitScale);
  const li = diagonalCrossEntropy(tf.mul(i2t, sc) as tf.Tensor2D);
  const lt = diagonalCrossEntropy(tf.mul(t2i, sc) as tf.Tensor2D);
  return tf.mul(tf.add(li, lt), 0.5) as tf.Scalar;
}

/** FILIP's loss over a batch of B pairs (image i goes with text i). */
export function filipLoss(
  img: { patches: tf.Tensor3D },
  txt: { tokens: tf.Tensor3D; mask: tf.Tensor2D },
  logitScale: tf.Tensor,
  opts: TokenwiseOptions = {},
): tf.Scalar {
  const topK = resolveTopK(opts.topK, 0.25);
  return tf.tidy(() => {
    const { i2t, t2i } = tokenwiseSimilarity(img.patches, txt.tokens, txt.mask, { topK });
    return symmetric(i2t, t2i, logitScale);
  });
}

/** CLIP's loss: cosine similarity of the global embeddings ([CLS] and [EOS]), both directions. */
export function clipLoss(imgGlobal: tf.Tensor2D, txtGlobal: tf.Tensor2D, logitScale: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const sim = matMulT(imgGlobal, txtGlobal, false, true) as tf.Tensor2D; // [B, B]
    return symmetric(sim, tf.transpose(sim) as tf.Tensor2D, logitScale);
  });
}
