/**
 * Choosing the executor of a network description (./netgraph.ts): 'tfjs' (./netgraph-tf.ts, the active tfjs backend),
 * 'onnx' (./onnx-emit.ts, onnxruntime-node on all CPU cores; an error when it cannot load) or 'auto' (onnx when
 * onnxruntime-node loads, tfjs otherwise). Both take and return host float32 arrays, NHWC for 4-D values.
 */
import { DifftalkError } from '../util/errors.js';
import type { NetGraph } from './netgraph.js';
import { TfNet } from './netgraph-tf.js';
import { OnnxNet } from './onnx-emit.js';

export type NetExecutor = 'auto' | 'onnx' | 'tfjs';
export const NET_EXECUTORS: readonly NetExecutor[] = ['auto', 'onnx', 'tfjs'];

export interface HostTensor {
  data: Float32Array;
  shape: number[];
}

export interface NetRunner {
  /** What runs it, for reports: `tfjs-<backend>` or `onnxruntime-cpu (<n> threads)`. */
  readonly executor: string;
  /** Inputs by name; outputs in the graph's output order. */
  run(inputs: Readonly<Record<string, HostTensor>>): Promise<HostTensor[]>;
  dispose(): void;
}

/** Build the runner for `graph` on `executor` (default tfjs). */
export async function createNetRunner(graph: NetGraph, executor: NetExecutor = 'tfjs', options: { threads?: number } = {}): Promise<NetRunner> {
  if (executor === 'tfjs') return new TfNet(graph);
  try {
    return await OnnxNet.create(graph, options);
  } catch (e) {
    if (executor === 'auto' && e instanceof DifftalkError && e.code === 'onnx-unavailable') return new TfNet(graph);
    throw e;
  }
}
