/**
 * Write PyTorch checkpoints in torch.save's zip format (the inverse of {@link readTorchFile}):
 * `<root>/data.pkl` (pickle protocol 2; tensors as `torch._utils._rebuild_tensor_v2` of a persistent-id storage
 * `('storage', torch.FloatStorage, key, 'cpu', numel)`), `<root>/byteorder` ('little'), `<root>/data/<key>` (each
 * storage's raw little-endian bytes, 64-byte aligned) and `<root>/version` ('3'). Only globals that
 * `torch.load(weights_only=True)` allows are written (rebuild_tensor_v2, storage types, OrderedDict).
 *
 * The file is written to a temp file next to `file` and renamed into place (never half a checkpoint under its name).
 */
import { open } from 'node:fs/promises';
import { produceAtomic } from '../util/fs.js';
import { DifftalkError } from '../util/errors.js';
import { PyGlobalRef, PyOrderedDict, PyPersistent, PyReduce, PyTuple, pickle, type PickleValue } from './pickle-writer.js';
import { tensorBytes } from './safetensors.js';
import { STORAGE_DTYPES, type TensorData, type TorchDtype } from './torch.js';
import { ZipWriter } from './zip-writer.js';

const STORAGE_OF: Partial<Record<TorchDtype, string>> = {};
for (const [name, dtype] of Object.entries(STORAGE_DTYPES)) if (name !== 'UntypedStorage') STORAGE_OF[dtype] = name;

/** Turns a tensor into the pickle value that rebuilds it (registering its storage). */
export type TensorRef = (t: TensorData) => PickleValue;

export interface TorchWriteResult {
  file: string;
  bytes: number;
  tensors: number;
}

/** Row-major strides of a contiguous tensor. */
function contiguousStride(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/**
 * Write the object `build(tensor)` returns as a zip-format PyTorch file. `build` calls `tensor(t)` for each tensor;
 * each becomes its own storage (key '0', '1', … in call order). `archiveName` is the zip's root folder ('archive',
 * as torch ≥ 1.6 names it for files saved under any name).
 */
export interface TorchWriteOptions {
  /** The zip's root folder (default 'archive'). */
  archiveName?: string;
  /** Called after each storage with the bytes written so far and the total (pickle + storages). */
  onProgress?: (done: number, total: number) => void;
  /** zip64 records even for a small file (tests). */
  forceZip64?: boolean;
}

export async function writeTorchFile(file: string, build: (tensor: TensorRef) => PickleValue, options: TorchWriteOptions = {}): Promise<TorchWriteResult> {
  const root = options.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]+$/.test(root) || root === '.' || root === '..') throw new DifftalkError('bad-flag', `archive name '${root}' is not a plain name`);
  const storages: TensorData[] = [];
  const tensor: TensorRef = (t) => {
    const storage = STORAGE_OF[t.dtype];
    if (!storage) throw new DifftalkError('bad-tensor', `cannot write a ${t.dtype} tensor`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== numel) throw new DifftalkError('bad-tensor', `tensor of shape [${t.shape}] has ${t.data.length} elements`);
    const key = String(storages.length);
    storages.push(t);
    const pid = new PyTuple(['storage', new PyGlobalRef('torch', storage), key, 'cpu', numel]);
    return new PyReduce('torch._utils', '_rebuild_tensor_v2', [
      new PyPersistent(pid),
      0,
      new PyTuple([...t.shape]),
      new PyTuple(contiguousStride(t.shape)),
      false,
      new PyOrderedDict(new Map()),
    ]);
  };
  const pkl = pickle(build(tensor));
  const bytes = await produceAtomic(file, async (tmp) => {
    const fh = await open(tmp, 'wx');
    try {
      const zip = new ZipWriter(fh, { forceZip64: options.forceZip64 });
      const total = pkl.length + storages.reduce((a, t) => a + t.data.byteLength, 0);
      let done = pkl.length;
      await zip.add(`${root}/data.pkl`, pkl);
      await zip.add(`${root}/byteorder`, Buffer.from('little', 'ascii'));
      for (let i = 0; i < storages.length; i++) {
        await zip.add(`${root}/data/${i}`, tensorBytes(storages[i]!));
        done += storages[i]!.data.byteLength;
        options.onProgress?.(done, total);
      }
      await zip.add(`${root}/version`, Buffer.from('3\n', 'ascii'));
      const size = await zip.finish();
      await fh.sync();
      return size;
    } finally {
      await fh.close();
    }
  });
  return { file, bytes, tensors: storages.length };
}

/** A state dict as torch writes it: an OrderedDict of name → tensor. */
export function stateDictValue(tensors: ReadonlyMap<string, TensorData>, tensor: TensorRef): PyOrderedDict {
  return new PyOrderedDict(new Map([...tensors].map(([k, t]) => [k, tensor(t)] as [PickleValue, PickleValue])));
}
