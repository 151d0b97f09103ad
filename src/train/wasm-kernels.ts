// Fills the gaps of the installed tfjs packages so that training runs whole on the chosen backend.
//
// 1. Gradients. `@tensorflow/tfjs-core`'s Node bundle registers no gradient functions: only the
//    `@tensorflow/tfjs` union package does, and its ESM files cannot be loaded by Node as they are
//    (extension-less imports). So `tf.variableGrads` would fail with "gradient function not found".
//    `registerTrainingGradients()` registers, for exactly the kernels the FILIP model and loss use,
//    gradients written from the same maths as tfjs's own. A gradient already registered (e.g. by
//    tfjs-node, which loads the union package) is left alone.
// 2. Transposed products. tfjs-backend-wasm 4.22 multiplies a transposed operand (matMul with
//    transposeA or transposeB) about 10x slower than it multiplies plain ones: 1.5 against 19 GFLOP/s
//    for [1152,256] x [640,256]^T here, while an explicit transpose costs a few per cent. Training is
//    made of such products (every weight gradient is x^T dy, FILIP's similarity is patches x tokens^T),
//    so `matMulT` transposes explicitly, and the gradients below use it. Likewise its comparison ops
//    and Tile are 25-80x slower with broadcasting than its arithmetic is (equal(x [32,36,32,20],
//    max [32,36,32,1]) 147 ms, x - max 1.8 ms): the gradients of Max, Sum and Mean below broadcast by
//    arithmetic (x - max == 0, zeros + dy) instead of equal() against a broadcast or broadcastTo().
// 3. WebAssembly kernels. The wasm backend lacks `UnsortedSegmentSum`, which the gradient of `gather`
//    (the token embedding) needs. `registerWasmKernels()` adds it as a JS kernel that reads and
//    writes the wasm heap directly, so the step never falls back to the slow plain backend.

import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Grad = () => tf.Tensor;
type GradMap = Record<string, Grad>;

/** Sums `g` over the axes along which `shape` was broadcast to g's shape, and gives it `shape`. */
function unbroadcast(g: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  const summed = axes.length > 0 ? tf.sum(g, axes) : g;
  return tf.reshape(summed, shape);
}

/** The input's shape with the reduced axes kept as size 1, so a reduced gradient broadcasts back. */
function keptShape(shape: number[], axis: number | number[]): number[] {
  const axes = tf.util.parseAxisParam(axis, shape);
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function binary(kernelName: string, grads: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => [Grad, Grad]): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as tf.Tensor[];
      const [da, db] = grads(dy as tf.Tensor, a!, b!);
      return { a: () => unbroadcast(da(), a!.shape), b: () => unbroadcast(db(), b!.shape) };
    },
  };
}

function unary(kernelName: string, save: 'x' | 'y', grad: (dy: tf.Tensor, saved: tf.Tensor) => tf.Tensor): tf.GradConfig {
  return {
    kernelName,
    ...(save === 'x' ? { inputsToSave: ['x'] } : { outputsToSave: [true] }),
    gradFunc: (dy, saved) => ({ x: () => grad(dy as tf.Tensor, (saved as tf.Tensor[])[0]!) }),
  };
}

/** The last two axes swapped. */
function swapLast(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

/**
 * `tf.matMul(a, b, transposeA, transposeB)` with the transposes made explicit, so that the backend
 * only ever multiplies plain operands (see the header: 10x faster on wasm).
 */
export function matMulT(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  return tf.matMul(transposeA ? swapLast(a) : a, transposeB ? swapLast(b) : b);
}

/** `x` broadcast to `shape` by adding it to zeros (the wasm backend's Tile is far slower). */
function broadcastBy(x: tf.Tensor, shape: number[]): tf.Tensor {
  return tf.util.arraysEqual(x.shape, shape) ? x : tf.add(tf.zeros(shape, x.dtype), x);
}

const f32 = (t: tf.Tensor): tf.Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));

const GRADIENTS: tf.GradConfig[] = [
  binary('Add', (dy) => [() => dy, () => dy]),
  binary('Sub', (dy) => [() => dy, () => tf.neg(dy)]),
  binary('Multiply', (dy, a, b) => [() => tf.mul(dy, f32(b)), () => tf.mul(dy, f32(a))]),
  binary('RealDiv', (dy, a, b) => [() => tf.div(dy, b), () => tf.neg(tf.div(tf.mul(dy, a), tf.square(b)))]),
  binary('Minimum', (dy, a, b) => [
    () => tf.mul(dy, f32(tf.lessEqual(a, b))),
    () => tf.mul(dy, f32(tf.greater(a, b))),
  ]),
  binary('Maximum', (dy, a, b) => [
    () => tf.mul(dy, f32(tf.greaterEqual(a, b))),
    () => tf.mul(dy, f32(tf.less(a, b))),
  ]),
  unary('Neg', 'x', (dy) => tf.neg(dy)),
  unary('Square', 'x', (dy, x) => tf.mul(dy, tf.mul(f32(x), 2))),
  unary('Sqrt', 'y', (dy, y) => tf.div(dy, tf.mul(y, 2))),
  // d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
  unary('Rsqrt', 'y', (dy, y) => tf.mul(dy, tf.mul(tf.mul(tf.square(y), y), -0.5))),
  unary('Exp', 'y', (dy, y) => tf.mul(dy, y)),
  unary('Log', 'x', (dy, x) => tf.div(dy, f32(x))),
  // d/dx erf(x) = 2/sqrt(pi) exp(-x^2)
  unary('Erf', 'x', (dy, x) => tf.mul(dy, tf.mul(tf.exp(tf.neg(tf.square(x))), 2 / Math.sqrt(Math.PI)))),
  unary('Tanh', 'y', (dy, y) => tf.mul(dy, tf.sub(1, tf.square(y)))),
  { kernelName: 'Cast', gradFunc: (dy) => ({ x: () => (dy as tf.Tensor).clone() }) },
  { kernelName: 'Identity', gradFunc: (dy) => ({ x: () => (dy as tf.Tensor).clone() }) },
  {
    kernelName: 'Reshape',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => tf.reshape(dy as tf.Tensor, (saved as tf.Tensor[])[0]!.shape) }),
  },
  {
    kernelName: 'ExpandDims',
    inputsToSave: ['input'],
    gradFunc: (dy, saved) => ({ input: () => tf.reshape(dy as tf.Tensor, (saved as tf.Tensor[])[0]!.shape) }),
  },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _saved, attrs) => {
      const perm = (attrs as { perm: number[] }).perm;
      const inverse = new Array<number>(perm.length);
      perm.forEach((p, i) => (inverse[p] = i));
      return { x: () => tf.transpose(dy as tf.Tensor, inverse) };
    },
  },
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = (saved as tf.Tensor[])[0]!;
      const { axis } = attrs as { axis: number | number[] };
      return { x: () => broadcastBy(tf.reshape(dy as tf.Tensor, keptShape(x.shape, axis)), x.shape) };
    },
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = (saved as tf.Tensor[])[0]!;
      const { axis } = attrs as { axis: number | number[] };
      const kept = keptShape(x.shape, axis);
      const count = x.size / tf.util.sizeFromShape(kept);
      return { x: () => broadcastBy(tf.reshape(tf.div(dy as tf.Tensor, count), kept), x.shape) };
    },
  },
  {
    // Every element equal to the maximum receives the gradient (as tfjs does); exact ties are rare
    // in float data, and masked entries sit far below any real one.
    kernelName: 'Max',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as tf.Tensor[];
      const kept = keptShape(x!.shape, (attrs as { reductionIndices: number | number[] }).reductionIndices);
      return {
        x: () => tf.mul(tf.reshape(dy as tf.Tensor, kept), f32(tf.equal(tf.sub(x!, tf.reshape(y!, kept)), 0))),
      };
    },
  },
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const y = (saved as tf.Tensor[])[0]!;
      const { dim } = attrs as { dim: number };
      const d = dy as tf.Tensor;
      return { logits: () => tf.mul(y, tf.sub(d, tf.sum(tf.mul(d, y), dim, true))) };
    },
  },
  {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as tf.Tensor[];
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      const d = dy as tf.Tensor;
      let da: Grad;
      let db: Grad;
      if (!transposeA && !transposeB) {
        da = () => matMulT(d, b!, false, true);
        db = () => matMulT(a!, d, true, false);
      } else if (!transposeA && transposeB) {
        da = () => matMulT(d, b!, false, false);
        db = () => matMulT(d, a!, true, false);
      } else if (transposeA && !transposeB) {
        da = () => matMulT(b!, d, false, true);
        db = () => matMulT(a!, d, false, false);
      } else {
        da = () => matMulT(b!, d, true, true);
        db = () => matMulT(d, a!, true, true);
      }
      return { a: () => unbroadcast(da(), a!.shape), b: () => unbroadcast(db(), b!.shape) };
    },
  },
  {
    // Only the form the model uses: rows of a table (axis 0, no batch dims).
    kernelName: 'GatherV2',
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, saved, attrs) => {
      const [x, indices] = saved as tf.Tensor[];
      const { axis, batchDims } = attrs as { axis: number; batchDims: number };
      if (axis !== 0 || batchDims !== 0) throw new Error('gather gradient: only axis 0 without batch dims');
      const rows = indices!.size;
      return {
        x: () =>
          tf.unsortedSegmentSum(
            tf.reshape(dy as tf.Tensor, [rows, ...x!.shape.slice(1)]),
            tf.reshape(indices!, [rows]) as tf.Tensor1D,
            x!.shape[0]!,
          ),
        indices: () => tf.zerosLike(indices!),
      };
    },
  },
  {
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = (saved as tf.Tensor[])[0]!;
      const { begin, size } = attrs as { begin: number | number[]; size: number | number[] };
      const [begin_, size_] = tf.slice_util.parseSliceParams(x, begin, size);
      const pads = x.shape.map((d, i) => [begin_[i]!, d - begin_[i]! - size_[i]!] as [number, number]);
      return { x: () => tf.pad(dy as tf.Tensor, pads) };
    },
  },
  {
    kernelName: 'SplitV',
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.concat(dy as tf.Tensor[], (attrs as { axis: number }).axis) }),
  },
  {
    kernelName: 'Concat',
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const inputs = saved as tf.Tensor[];
      const axis = tf.util.parseAxisParam((attrs as { axis: number }).axis, inputs[0]!.shape)[0]!;
      const parts = tf.split(dy as tf.Tensor, inputs.map((t) => t.shape[axis]!), axis);
      return Object.fromEntries(parts.map((p, i) => [String(i), () => p])) as GradMap;
    },
  },
];

let gradientsRegistered = false;

/** Registers the gradients listed above for every kernel that has none yet. Idempotent. */
export function registerTrainingGradients(): void {
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  for (const config of GRADIENTS) {
    if (tf.getGradient(config.kernelName) == null) tf.registerGradient(config);
  }
}

/** Kernels we add to the wasm backend; listed so tests and the run can say what was added. */
export const ADDED_WASM_KERNELS = ['UnsortedSegmentSum'] as const;

/**
 * `UnsortedSegmentSum(x [N, ...inner], segmentIds [N], numSegments)` -> [numSegments, ...inner]:
 * row n of x is added into row segmentIds[n]; ids outside [0, numSegments) are dropped (as in TF).
 * segmentIds may have the shape of x's first k axes; they are then flattened with them.
 */
function unsortedSegmentSumWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const x = args.inputs['x']!;
  const ids = args.inputs['segmentIds']!;
  const numSegments = args.attrs!['numSegments'] as number;
  const rows = tf.util.sizeFromShape(ids.shape);
  const inner = rows === 0 ? 0 : tf.util.sizeFromShape(x.shape) / rows;
  const outShape = [numSegments, ...x.shape.slice(ids.shape.length)];
  // Allocate first: growing the heap detaches typed-array views taken before.
  const out = backend.makeOutput(outShape, x.dtype);
  const outValues = backend.typedArrayFromHeap(out);
  const xValues = backend.typedArrayFromHeap(x);
  const idValues = backend.typedArrayFromHeap(ids);
  outValues.fill(0);
  for (let r = 0; r < rows; r++) {
    const segment = idValues[r]!;
    if (segment < 0 || segment >= numSegments) continue;
    const from = r * inner;
    const to = segment * inner;
    for (let k = 0; k < inner; k++) outValues[to + k]! += xValues[from + k]!;
  }
  return out;
}

let wasmKernelsRegistered = false;

/** Adds the kernels of ADDED_WASM_KERNELS to the 'wasm' backend, where it has none. Idempotent. */
export function registerWasmKernels(): void {
  if (wasmKernelsRegistered) return;
  wasmKernelsRegistered = true;
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') == null) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSumWasm as unknown as tf.KernelFunc,
    });
  }
}

/**
 * The plain cpu backend's own `UnsortedSegmentSum` loops over the segments with tensor ops (one
 * equal/mul/sum per segment id), so the gradient of the token embedding costs vocabulary x tokens x
 * width: in a profile it took 14 s of a 20 s tiny-model step. This replaces it with one pass over the
 * rows, the same arithmetic as the wasm kernel above.
 */
function unsortedSegmentSumCpu(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as {
    data: { get(id: unknown): { values: tf.TypedArray } };
    makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.TypedArray): tf.TensorInfo;
  };
  const x = args.inputs['x']!;
  const ids = args.inputs['segmentIds']!;
  const numSegments = args.attrs!['numSegments'] as number;
  const rows = tf.util.sizeFromShape(ids.shape);
  const inner = rows === 0 ? 0 : tf.util.sizeFromShape(x.shape) / rows;
  const outShape = [numSegments, ...x.shape.slice(ids.shape.length)];
  const xValues = backend.data.get(x.dataId).values;
  const idValues = backend.data.get(ids.dataId).values;
  const out = new Float32Array(numSegments * inner);
  for (let r = 0; r < rows; r++) {
    const segment = idValues[r]!;
    if (segment < 0 || segment >= numSegments) continue;
    const from = r * inner;
    const to = segment * inner;
    for (let k = 0; k < inner; k++) out[to + k]! += xValues[from + k]!;
  }
  return backend.makeTensorInfo(outShape, x.dtype, out);
}

let cpuKernelsReplaced = false;

/** Swaps the cpu backend's UnsortedSegmentSum for the one-pass kernel above. Idempotent. */
export function registerCpuKernels(): void {
  if (cpuKernelsReplaced) return;
  cpuKernelsReplaced = true;
  if (tf.getKernel('UnsortedSegmentSum', 'cpu') != null) tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
  tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'cpu', kernelFunc: unsortedSegmentSumCpu as unknown as tf.KernelFunc });
}
