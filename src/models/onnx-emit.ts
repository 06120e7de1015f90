/**
 * The ONNX executor of a network description (./netgraph.ts): `emitOnnx` builds an ONNX ModelProto (IR 8, opset 17)
 * in memory with the protobuf writer of src/weights/protobuf-writer.ts — weights as float32 raw_data initializers in
 * their PyTorch layout, NCHW inside, a Transpose from/to NHWC at the graph boundary — and `OnnxNet` runs it with
 * onnxruntime-node (an optional dependency, loaded by dynamic import) on the CPU, intra-op threads = all cores.
 *
 * Op mapping: conv → Conv (+ Relu), maxpool → MaxPool (−∞ padding), avgpool → AveragePool(count_include_pad=0),
 * concat → Concat(axis 1), affine → Sub, Div by [1, C, 1, 1] constants, l2norm → ReduceSumSquare(axis 1), Sqrt,
 * Add eps, Div; sqdiff → Sub, Mul; mean-hw → GlobalAveragePool, Flatten; resize → Resize(linear, half_pixel) to
 * sizes built from the input's own N and C (Shape, Slice, Concat); flatten → Flatten(axis 1); linear → Gemm(transB 1)
 * (+ Relu); clips → Reshape to [−1, frames, C, H, W] (C, H, W from Shape) and Transpose to NCDHW; conv3d → 3-D Conv
 * (+ Relu), maxpool3d → 3-D MaxPool, avgpool3d → 3-D AveragePool, mean-dhw → GlobalAveragePool, Flatten. 5-D outputs
 * are transposed back to NDHWC.
 */
import { availableParallelism } from 'node:os';
import { loadOnnxRuntime, type OrtModule, type OrtSession } from '../audio/onnx.js';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { ProtoWriter } from '../weights/protobuf-writer.js';
import { validateGraph, type NetGraph } from './netgraph.js';
import type { HostTensor, NetRunner } from './net-runner.js';

/** onnx.proto enums used here. */
const FLOAT = 1;
const INT64 = 7;
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, INTS: 7 } as const;
export const ONNX_OPSET = 17;
const IR_VERSION = 8;

type Attr = number | string | readonly number[] | { float: number };

function attribute(name: string, v: Attr): ProtoWriter {
  const a = new ProtoWriter().string(1, name);
  if (typeof v === 'string') a.bytesField(4, new TextEncoder().encode(v)).int(20, ATTR.STRING);
  else if (typeof v === 'number') a.int(3, v).int(20, ATTR.INT);
  else if ('float' in v) a.float(2, v.float).int(20, ATTR.FLOAT);
  else a.ints(8, v as readonly number[]).int(20, ATTR.INTS);
  return a;
}

function tensorProto(name: string, dims: readonly number[], data: Float32Array | BigInt64Array): ProtoWriter {
  const t = new ProtoWriter()
    .ints(1, dims)
    .int(2, data instanceof Float32Array ? FLOAT : INT64)
    .string(8, name);
  // raw_data is little-endian; every platform onnxruntime-node ships for is little-endian.
  return t.bytesField(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function valueInfo(name: string, dims: readonly (number | string)[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) shape.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
  const tensorType = new ProtoWriter().int(1, FLOAT).message(2, shape);
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensorType));
}

/** The ModelProto bytes of a network description. */
export function emitOnnx(g: NetGraph): Uint8Array {
  validateGraph(g);
  const nodes: ProtoWriter[] = [];
  const inits: ProtoWriter[] = [];
  const usedParams = new Set<string>();
  const rank = new Map<string, number>();
  let counter = 0;
  const tmp = (hint: string) => `_${hint}_${counter++}`;
  const node = (opType: string, inputs: readonly string[], outputs: readonly string[], attrs: Record<string, Attr> = {}) => {
    const n = new ProtoWriter();
    for (const i of inputs) n.string(1, i);
    for (const o of outputs) n.string(2, o);
    n.string(3, `${opType}_${nodes.length}`).string(4, opType);
    for (const [k, v] of Object.entries(attrs)) n.message(5, attribute(k, v));
    nodes.push(n);
  };
  const constF = (hint: string, dims: readonly number[], values: readonly number[]) => {
    const name = tmp(hint);
    inits.push(tensorProto(name, dims, Float32Array.from(values)));
    return name;
  };
  const constI = (hint: string, values: readonly number[]) => {
    const name = tmp(hint);
    inits.push(tensorProto(name, [values.length], BigInt64Array.from(values.map((v) => BigInt(v)))));
    return name;
  };
  const param = (name: string) => {
    if (!usedParams.has(name)) {
      const p = g.params.get(name)!;
      inits.push(tensorProto(name, p.shape, p.data));
      usedParams.add(name);
    }
    return name;
  };

  const v = (name: string) => `v:${name}`;
  for (const i of g.inputs) {
    node('Transpose', [i.name], [v(i.name)], { perm: [0, 3, 1, 2] });
    rank.set(i.name, 4);
  }
  for (const op of g.ops) {
    const y = v(op.y);
    switch (op.op) {
      case 'conv': {
        const w = g.params.get(op.weight)!;
        const ins = [v(op.x), param(op.weight), ...(op.bias ? [param(op.bias)] : [])];
        const attrs = { kernel_shape: [w.shape[2]!, w.shape[3]!], strides: op.stride, pads: op.pad, dilations: [1, 1], group: 1 };
        if (op.relu) {
          const c = tmp('conv');
          node('Conv', ins, [c], attrs);
          node('Relu', [c], [y]);
        } else node('Conv', ins, [y], attrs);
        break;
      }
      case 'relu':
        node('Relu', [v(op.x)], [y]);
        break;
      case 'maxpool':
        node('MaxPool', [v(op.x)], [y], { kernel_shape: op.k, strides: op.stride, pads: op.pad, ceil_mode: 0 });
        break;
      case 'avgpool':
        node('AveragePool', [v(op.x)], [y], { kernel_shape: op.k, strides: op.stride, pads: op.pad, ceil_mode: 0, count_include_pad: 0 });
        break;
      case 'concat':
        node(
          'Concat',
          op.xs.map((n) => v(n)),
          [y],
          { axis: 1 },
        );
        break;
      case 'affine': {
        const c = op.sub.length;
        const d = tmp('sub');
        node('Sub', [v(op.x), constF('shift', [1, c, 1, 1], op.sub)], [d]);
        node('Div', [d, constF('scale', [1, c, 1, 1], op.div)], [y]);
        break;
      }
      case 'l2norm': {
        const [s, r, e] = [tmp('ss'), tmp('sqrt'), tmp('eps')];
        node('ReduceSumSquare', [v(op.x)], [s], { axes: [1], keepdims: 1 });
        node('Sqrt', [s], [r]);
        node('Add', [r, constF('eps', [], [op.eps])], [e]);
        node('Div', [v(op.x), e], [y]);
        break;
      }
      case 'sqdiff': {
        const d = tmp('diff');
        node('Sub', [v(op.a), v(op.b)], [d]);
        node('Mul', [d, d], [y]);
        break;
      }
      case 'mean-hw': {
        const p = tmp('gap');
        node('GlobalAveragePool', [v(op.x)], [p]);
        node('Flatten', [p], [y], { axis: 1 });
        break;
      }
      case 'resize': {
        const [shape, nc, sizes] = [tmp('shape'), tmp('nc'), tmp('sizes')];
        node('Shape', [v(op.x)], [shape]);
        node('Slice', [shape, constI('start', [0]), constI('end', [2])], [nc]);
        node('Concat', [nc, constI('hw', op.size)], [sizes], { axis: 0 });
        node('Resize', [v(op.x), '', '', sizes], [y], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' });
        break;
      }
      case 'flatten':
        node('Flatten', [v(op.x)], [y], { axis: 1 });
        break;
      case 'linear': {
        const ins = [v(op.x), param(op.weight), ...(op.bias ? [param(op.bias)] : [])];
        if (op.relu) {
          const c = tmp('gemm');
          node('Gemm', ins, [c], { transB: 1 });
          node('Relu', [c], [y]);
        } else node('Gemm', ins, [y], { transB: 1 });
        break;
      }
      case 'clips': {
        const [shape, chw, dims, r] = [tmp('shape'), tmp('chw'), tmp('dims'), tmp('clips')];
        node('Shape', [v(op.x)], [shape]);
        node('Slice', [shape, constI('start', [1]), constI('end', [4])], [chw]);
        node('Concat', [constI('nt', [-1, op.frames]), chw], [dims], { axis: 0 });
        node('Reshape', [v(op.x), dims], [r]);
        node('Transpose', [r], [y], { perm: [0, 2, 1, 3, 4] });
        break;
      }
      case 'conv3d': {
        const w = g.params.get(op.weight)!;
        const ins = [v(op.x), param(op.weight), ...(op.bias ? [param(op.bias)] : [])];
        const attrs = { kernel_shape: w.shape.slice(2), strides: op.stride, pads: op.pad, dilations: [1, 1, 1], group: 1 };
        if (op.relu) {
          const c = tmp('conv3d');
          node('Conv', ins, [c], attrs);
          node('Relu', [c], [y]);
        } else node('Conv', ins, [y], attrs);
        break;
      }
      case 'maxpool3d':
        node('MaxPool', [v(op.x)], [y], { kernel_shape: op.k, strides: op.stride, pads: op.pad, ceil_mode: 0 });
        break;
      case 'avgpool3d':
        node('AveragePool', [v(op.x)], [y], { kernel_shape: op.k, strides: op.stride, pads: [0, 0, 0, 0, 0, 0], ceil_mode: 0, count_include_pad: 0 });
        break;
      case 'mean-dhw': {
        const p = tmp('gap3d');
        node('GlobalAveragePool', [v(op.x)], [p]);
        node('Flatten', [p], [y], { axis: 1 });
        break;
      }
    }
    rank.set(
      op.y,
      op.op === 'clips'
        ? 5
        : op.op === 'mean-hw' || op.op === 'mean-dhw' || op.op === 'flatten' || op.op === 'linear'
          ? 2
          : op.op === 'concat'
            ? rank.get(op.xs[0]!)!
            : op.op === 'sqdiff'
              ? rank.get(op.a)!
              : rank.get(op.x)!,
    );
  }
  const outputs: ProtoWriter[] = [];
  for (const o of g.outputs) {
    if (rank.get(o) === 4) {
      node('Transpose', [v(o)], [o], { perm: [0, 2, 3, 1] });
      outputs.push(valueInfo(o, ['N', 'H', 'W', 'C']));
    } else if (rank.get(o) === 5) {
      node('Transpose', [v(o)], [o], { perm: [0, 2, 3, 4, 1] });
      outputs.push(valueInfo(o, ['N', 'D', 'H', 'W', 'C']));
    } else {
      node('Identity', [v(o)], [o]);
      outputs.push(valueInfo(o, ['N', 'C']));
    }
  }
  const graph = new ProtoWriter();
  for (const n of nodes) graph.message(1, n);
  graph.string(2, g.name);
  for (const t of inits) graph.message(5, t);
  for (const i of g.inputs) graph.message(11, valueInfo(i.name, ['N', 'H', 'W', i.channels]));
  for (const o of outputs) graph.message(12, o);
  return new ProtoWriter().int(1, IR_VERSION).string(2, 'difftalk').message(7, graph).message(8, new ProtoWriter().string(1, '').int(2, ONNX_OPSET)).bytes();
}

/** A network description compiled by onnxruntime (CPU); `dispose()` releases the session. */
export class OnnxNet implements NetRunner {
  private constructor(
    readonly graph: NetGraph,
    private readonly ort: OrtModule,
    private readonly session: OrtSession,
    readonly threads: number,
  ) {}

  get executor(): string {
    return `onnxruntime-cpu (${this.threads} threads)`;
  }

  /** Emit the model and open a session; throws DifftalkError('onnx-unavailable') when onnxruntime-node does not load. */
  static async create(graph: NetGraph, options: { threads?: number; runtime?: string } = {}): Promise<OnnxNet> {
    const ort = await loadOnnxRuntime(options.runtime, 'the ONNX executor of the eval networks');
    const threads = Math.max(1, options.threads ?? availableParallelism());
    let session: OrtSession;
    try {
      session = await ort.InferenceSession.create(emitOnnx(graph), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        executionProviders: ['cpu'],
        // No busy-waiting between runs, so idle threads leave the cores to tfjs, ffmpeg and other processes (no speed
        // difference measured on 2 cores, docs/benchmarks.md).
        extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
      });
    } catch (e) {
      throw new DifftalkError('onnx-run-failed', `${graph.name}: onnxruntime refused the emitted model: ${errorMessage(e)}`, { cause: e });
    }
    return new OnnxNet(graph, ort, session, threads);
  }

  async run(inputs: Readonly<Record<string, HostTensor>>): Promise<HostTensor[]> {
    const feeds: Record<string, InstanceType<OrtModule['Tensor']>> = {};
    for (const i of this.graph.inputs) {
      const t = inputs[i.name];
      if (!t || t.shape.length !== 4 || t.shape[3] !== i.channels)
        throw new DifftalkError('bad-input', `${this.graph.name}: input ${i.name} must be NHWC with ${i.channels} channels`);
      feeds[i.name] = new this.ort.Tensor('float32', t.data, t.shape);
    }
    let res: Record<string, { dims: readonly number[]; data: unknown }>;
    try {
      res = await this.session.run(feeds);
    } catch (e) {
      throw new DifftalkError('onnx-run-failed', `${this.graph.name}: onnxruntime failed: ${errorMessage(e)}`, { cause: e });
    }
    return this.graph.outputs.map((o) => ({ data: res[o]!.data as Float32Array, shape: [...res[o]!.dims] }));
  }

  dispose(): void {
    void this.session.release();
  }
}
