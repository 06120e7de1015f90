/**
 * Read PyTorch `.pt` / `.pth` / `.ckpt` files without Python.
 *
 * - zip format (torch.save default since 1.6): `<root>/data.pkl` pickles the object with persistent-id storages,
 *   `<root>/data/<key>` holds each storage's raw bytes, `<root>/byteorder` says 'little' or 'big'.
 * - TorchScript archives (torch.jit.save) have the same `<root>/data.pkl` + `<root>/data/<key>` layout: data.pkl pickles
 *   the `__torch__.*` module objects, which load as inert {@link PyObject}s whose BUILD state maps attribute names to
 *   submodules, parameters and buffers, so `tensors` names them by attribute path (`Mixed_3b.b0.conv3d.weight`). The
 *   archive's code/ and constants.pkl are never read or run.
 * - legacy format (`_use_new_zipfile_serialization=False`, all files before torch 1.6): five pickles
 *   (magic number, protocol 1001, sys_info, the object, the sorted list of storage keys) followed, per key,
 *   by an int64 element count and the raw bytes.
 *
 * Only whitelisted globals are interpreted (tensor rebuild functions, storage types, OrderedDict, torch.Size …);
 * everything else loads as an inert {@link PyObject}. Tensors are materialised contiguous in row-major order.
 */
import { open, readFile, stat } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { assertDepth, PyGlobal, PyObject, unpickle, type PyCallable } from './pickle.js';

export type TorchDtype = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
/** float16 / bfloat16 are widened to Float32Array (exactly); bool is a Uint8Array of 0/1. */
export type TensorArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface TensorData {
  /** The dtype stored in the file (float16 / bfloat16 data is widened to float32 in `data`). */
  dtype: TorchDtype;
  shape: number[];
  /** Contiguous, row-major. */
  data: TensorArray;
}

export interface TorchFile {
  format: 'zip' | 'legacy';
  /** The unpickled Python object tree (Map for dicts, arrays for lists/tuples, TorchTensor for tensors). */
  value: unknown;
  /** Every tensor reachable through dicts/lists, by dotted path (e.g. `state_dict.model.conv.weight`). */
  tensors: Map<string, TensorData>;
}

export const STORAGE_DTYPES: Record<string, TorchDtype> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

export const ELEMENT_SIZE: Record<TorchDtype, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A storage type named by a pickle (torch.FloatStorage …). */
class StorageType {
  constructor(readonly dtype: TorchDtype) {}
}

/** One storage referenced by the pickle; bytes are filled in after the pickle is read. */
class StorageRef {
  bytes?: Uint8Array;
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly numel: number,
    /** legacy storage views: element offset into the root storage */
    readonly viewOffset = 0,
    readonly viewSize?: number,
    readonly root?: StorageRef,
  ) {}
}

/** A tensor as the pickle describes it; `data` is set by {@link materialise}. */
export class TorchTensor implements TensorData {
  data: TensorArray = new Float32Array(0);
  buildState: unknown = undefined;
  constructor(
    readonly storage: StorageRef,
    readonly dtype: TorchDtype,
    readonly storageOffset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

function bad(file: string, msg: string): DifftalkError {
  return new DifftalkError('bad-torch-file', `${file}: ${msg}`, {
    suggestion: 'Expected a PyTorch checkpoint written by torch.save (zip or legacy format); re-download the file.',
  });
}

function intList(v: unknown, what: string, file: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
    throw bad(file, `tensor ${what} is not a tuple of non-negative integers`);
  }
  return [...(v as number[])];
}

function torchGlobals(file: string, tensors: TorchTensor[]): Record<string, PyCallable> {
  const rebuild: PyCallable = (args) => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) throw bad(file, 'tensor rebuilt from something that is not a storage');
    if (typeof offset !== 'number') throw bad(file, 'tensor storage offset is not an integer');
    const shape = intList(size, 'size', file);
    const strides = intList(stride, 'stride', file);
    if (shape.length !== strides.length) throw bad(file, 'tensor size and stride ranks differ');
    const t = new TorchTensor(storage, storage.dtype, offset, shape, strides);
    tensors.push(t);
    return t;
  };
  const g: Record<string, PyCallable> = {
    'torch._utils._rebuild_tensor_v2': rebuild,
    'torch._utils._rebuild_tensor': rebuild,
    'torch._utils._rebuild_parameter': (args) => args[0],
    'torch._utils._rebuild_parameter_with_state': (args) => args[0],
    'torch._tensor._rebuild_from_type_v2': (args) => {
      const [fn, , inner] = args;
      if (typeof fn !== 'function' || !Array.isArray(inner)) return new PyObject(new PyGlobal('torch._tensor', '_rebuild_from_type_v2'), args);
      return (fn as PyCallable)(inner);
    },
    'torch.Size': (args) => (Array.isArray(args[0]) ? [...(args[0] as unknown[])] : []),
    'torch.device': (args) => args.join(':'),
  };
  for (const [name, dtype] of Object.entries(STORAGE_DTYPES)) {
    const marker = new StorageType(dtype);
    g[`torch.${name}`] = Object.assign(() => marker, { marker });
    g[`torch.storage.${name}`] = g[`torch.${name}`]!;
  }
  return g;
}

/** The storage type of a persistent id (whitelisted global functions carry their marker). */
function storageTypeOf(v: unknown, file: string): TorchDtype {
  if (typeof v === 'function' && 'marker' in v && (v as { marker: unknown }).marker instanceof StorageType) {
    return (v as { marker: StorageType }).marker.dtype;
  }
  if (v instanceof PyGlobal) throw bad(file, `unsupported storage type ${v.qualifiedName}`);
  throw bad(file, 'persistent id without a storage type');
}

function makePersistentLoad(file: string, storages: Map<string, StorageRef>) {
  return (pid: unknown): unknown => {
    if (!Array.isArray(pid) || pid[0] !== 'storage') {
      if (Array.isArray(pid) && pid[0] === 'module') return null; // legacy source-code records: not data
      throw bad(file, 'unsupported persistent id (expected a storage record)');
    }
    const dtype = storageTypeOf(pid[1], file);
    const key = String(pid[2]);
    const numel = typeof pid[4] === 'number' ? pid[4] : 0;
    let root = storages.get(key);
    if (!root) {
      root = new StorageRef(key, dtype, numel);
      storages.set(key, root);
    }
    const view = pid[5];
    if (Array.isArray(view) && view.length >= 3) {
      // legacy storage view: (view_key, offset, view_size)
      return new StorageRef(String(view[0]), dtype, Number(view[2]), Number(view[1]), Number(view[2]), root);
    }
    return root;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Element decoding

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Decode a storage's bytes into a typed array of its elements (little-endian unless `bigEndian`). */
export function decodeElements(bytes: Uint8Array, dtype: TorchDtype, bigEndian = false): TensorArray {
  const size = ELEMENT_SIZE[dtype];
  const n = Math.floor(bytes.length / size);
  // copy to an aligned buffer (zip entries are aligned, legacy ones are not)
  const b = new Uint8Array(n * size);
  b.set(bytes.subarray(0, n * size));
  if (bigEndian && size > 1) {
    for (let i = 0; i < b.length; i += size) b.subarray(i, i + size).reverse();
  }
  switch (dtype) {
    case 'float32':
      return new Float32Array(b.buffer);
    case 'float64':
      return new Float64Array(b.buffer);
    case 'int64':
      return new BigInt64Array(b.buffer);
    case 'int32':
      return new Int32Array(b.buffer);
    case 'int16':
      return new Int16Array(b.buffer);
    case 'int8':
      return new Int8Array(b.buffer);
    case 'uint8':
      return b;
    case 'bool':
      return b.map((x) => (x ? 1 : 0));
    case 'float16': {
      const u = new Uint16Array(b.buffer);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(u[i]!);
      return out;
    }
    case 'bfloat16': {
      const u = new Uint16Array(b.buffer);
      const w = new Uint32Array(n);
      for (let i = 0; i < n; i++) w[i] = u[i]! << 16;
      return new Float32Array(w.buffer);
    }
  }
}

function newArrayLike(src: TensorArray, n: number): TensorArray {
  const C = src.constructor as new (n: number) => TensorArray;
  return new C(n);
}

/** Gather a strided view into a new contiguous array. */
function gather(src: TensorArray, offset: number, shape: number[], stride: number[], file: string): TensorArray {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n === 0) return newArrayLike(src, 0);
  let maxIndex = offset;
  for (let d = 0; d < shape.length; d++) maxIndex += (shape[d]! - 1) * stride[d]!;
  if (offset < 0 || maxIndex >= src.length)
    throw bad(file, `tensor view (offset ${offset}, size [${shape}], stride [${stride}]) exceeds its storage of ${src.length} elements`);
  let contiguous = true;
  for (let d = shape.length - 1, expect = 1; d >= 0; d--) {
    if (shape[d]! !== 1 && stride[d]! !== expect) contiguous = false;
    expect *= shape[d]!;
  }
  if (contiguous) return src.slice(offset, offset + n) as TensorArray;
  const out = newArrayLike(src, n) as unknown as { [i: number]: number | bigint };
  const s = src as unknown as { [i: number]: number | bigint };
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let pos = offset;
  for (let i = 0; i < n; i++) {
    out[i] = s[pos]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      pos += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      pos -= idx[d]! * stride[d]!;
      idx[d] = 0;
    }
  }
  return out as unknown as TensorArray;
}

/**
 * Limits relative to the file: tensors are materialised as contiguous copies, so a view with stride 0 over a 1-element
 * storage could otherwise ask for any size (a 612-byte .pth asked for 3.9 GB). PyTorch shares storages instead; here
 * the copies may total at most MATERIALISE_FACTOR × the stored bytes plus MATERIALISE_SLACK_BYTES.
 */
export const TORCH_LIMITS = {
  materialiseFactor: 4,
  materialiseSlackBytes: 64 * 1024 * 1024,
  /** Uncompressed/compressed ratio of a deflated zip entry (deflate's own maximum is about 1032:1). */
  maxDeflateRatio: 1100,
  /** Total uncompressed bytes of a zip checkpoint. */
  maxUncompressedBytes: 16 * 1024 ** 3,
  /** A central-directory entry is at least this many bytes, so a directory of n bytes holds at most n/46 entries. */
  minCentralEntryBytes: 46,
} as const;

function materialise(tensors: TorchTensor[], file: string, bigEndian: boolean): void {
  const decoded = new Map<StorageRef, TensorArray>();
  let stored = 0;
  const roots = new Set<StorageRef>();
  for (const t of tensors) {
    const root = t.storage.root ?? t.storage;
    if (root.bytes && !roots.has(root)) {
      roots.add(root);
      stored += root.bytes.length;
    }
  }
  const budget = TORCH_LIMITS.materialiseFactor * stored + TORCH_LIMITS.materialiseSlackBytes;
  let total = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    total += n * ELEMENT_SIZE[t.dtype];
    if (!Number.isFinite(total) || total > budget) {
      throw bad(file, `its tensors would take ${total} bytes as arrays but the file stores ${stored} bytes of data (views that repeat data are limited)`);
    }
  }
  for (const t of tensors) {
    const root = t.storage.root ?? t.storage;
    if (!root.bytes) throw bad(file, `storage ${root.key} has no data`);
    let elems = decoded.get(root);
    if (!elems) {
      elems = decodeElements(root.bytes, root.dtype, bigEndian);
      decoded.set(root, elems);
    }
    t.data = gather(elems, t.storage.viewOffset + t.storageOffset, t.shape, t.stride, file);
  }
}

/** Every tensor reachable through Maps / arrays / inert objects' state, by dotted path. */
export function collectTensors(value: unknown, prefix = '', source = 'checkpoint'): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  const seen = new Set<unknown>();
  const walk = (v: unknown, path: string, depth = 0): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    assertDepth(depth, source);
    seen.add(v);
    if (v instanceof TorchTensor) {
      out.set(path, v);
      return;
    }
    const join = (k: unknown): string => (path ? `${path}.${String(k)}` : String(k));
    if (v instanceof Map) for (const [k, x] of v) walk(x, join(k), depth + 1);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, join(i), depth + 1));
    else if (v instanceof PyObject) {
      walk(v.state, path, depth + 1);
      for (const [k, x] of v.dictItems) walk(x, join(k), depth + 1);
    }
  };
  walk(value, prefix);
  return out;
}

/**
 * The model weights of a checkpoint as a flat `name → tensor` map: the tensors under `key` if given
 * (e.g. 'state_dict'), else under 'state_dict' / 'model' / 'net' / 'params' when present, else all tensors.
 * An optional `stripPrefix` (e.g. 'module.') is removed from names that start with it.
 */
export function stateDict(file: TorchFile, options: { key?: string; stripPrefix?: string } = {}): Map<string, TensorData> {
  let root: unknown = file.value;
  const keys = options.key !== undefined ? [options.key] : ['state_dict', 'model', 'net', 'params'];
  if (root instanceof Map) {
    for (const k of keys) {
      if (root.has(k) && root.get(k) instanceof Map) {
        root = root.get(k);
        break;
      }
      if (options.key !== undefined) throw new DifftalkError('bad-torch-file', `checkpoint has no '${options.key}' entry`);
    }
  }
  const flat = collectTensors(root);
  if (!options.stripPrefix) return flat;
  const out = new Map<string, TensorData>();
  for (const [k, t] of flat) out.set(k.startsWith(options.stripPrefix) ? k.slice(options.stripPrefix.length) : k, t);
  return out;
}

const TO_PLAIN_MAX_NODES = 1_000_000;

/** A plain-JSON view of a python object tree (tensors as {dtype, shape}), for printing metadata. */
export function toPlain(value: unknown, depth = 0, budget = { nodes: TO_PLAIN_MAX_NODES }): unknown {
  assertDepth(depth, 'checkpoint');
  // shared sub-objects are expanded at each use: a budget keeps a small DAG (or a cycle) from expanding exponentially
  if (--budget.nodes < 0) throw new DifftalkError('bad-pickle', `checkpoint metadata has more than ${TO_PLAIN_MAX_NODES} values to show`);
  const sub = (v: unknown): unknown => toPlain(v, depth + 1, budget);
  if (value instanceof TorchTensor) return { tensor: value.dtype, shape: value.shape };
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), sub(v)]));
  if (Array.isArray(value)) return value.map((v) => sub(v));
  if (value instanceof Set) return [...value].map(sub);
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (value instanceof PyObject) return { object: value.cls.qualifiedName, state: sub(value.state) };
  if (value instanceof PyGlobal) return { global: value.qualifiedName };
  if (typeof value === 'function') return { global: 'whitelisted' };
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// zip format

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

async function readZipDirectory(fh: import('node:fs/promises').FileHandle, fileSize: number, file: string): Promise<ZipEntry[]> {
  const tailLen = Math.min(fileSize, 65536 + 22 + 20);
  const tail = Buffer.alloc(tailLen);
  await fh.read(tail, 0, tailLen, fileSize - tailLen);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad(file, 'zip end-of-central-directory record not found (truncated file?)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if ((count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) && eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
    const z64Offset = Number(tail.readBigUInt64LE(eocd - 20 + 8));
    const z = Buffer.alloc(56);
    await fh.read(z, 0, 56, z64Offset);
    if (z.readUInt32LE(0) !== 0x06064b50) throw bad(file, 'bad zip64 end-of-central-directory record');
    count = Number(z.readBigUInt64LE(32));
    cdSize = Number(z.readBigUInt64LE(40));
    cdOffset = Number(z.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > fileSize) throw bad(file, 'zip central directory lies outside the file (truncated file?)');
  if (count > cdSize / TORCH_LIMITS.minCentralEntryBytes) throw bad(file, `zip declares ${count} entries in a ${cdSize}-byte directory`);
  const cd = Buffer.alloc(cdSize);
  await fh.read(cd, 0, cdSize, cdOffset);
  const entries: ZipEntry[] = [];
  let p = 0;
  let total = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw bad(file, 'corrupt zip central directory');
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extended information extra field
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) {
          size = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = Number(cd.readBigUInt64LE(q));
      }
      e += 4 + len;
    }
    if (localHeaderOffset + ZIP_LOCAL_HEADER_BYTES + compressedSize > fileSize) throw bad(file, `zip entry ${name} lies outside the file`);
    if (method === 8 && size > compressedSize * TORCH_LIMITS.maxDeflateRatio + ZIP_RATIO_SLACK_BYTES) {
      throw bad(file, `zip entry ${name} declares ${size} bytes from ${compressedSize} compressed (more than deflate can produce)`);
    }
    if (method === 0 && size !== compressedSize) throw bad(file, `stored zip entry ${name} has differing sizes`);
    total += size;
    if (total > TORCH_LIMITS.maxUncompressedBytes) throw bad(file, `zip entries total more than ${TORCH_LIMITS.maxUncompressedBytes} bytes`);
    entries.push({ name, method, compressedSize, size, localHeaderOffset });
    p = eEnd + commentLen;
  }
  // entries that share or overlap their data would let one compressed stream be inflated many times (overlap bombs)
  const sorted = [...entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (sorted[i]!.localHeaderOffset < prev.localHeaderOffset + ZIP_LOCAL_HEADER_BYTES + prev.compressedSize) {
      throw bad(file, `zip entries ${prev.name} and ${sorted[i]!.name} overlap`);
    }
  }
  return entries;
}

const ZIP_LOCAL_HEADER_BYTES = 30;
const ZIP_RATIO_SLACK_BYTES = 1024;

async function readZipEntry(fh: import('node:fs/promises').FileHandle, entry: ZipEntry, fileSize: number, file: string): Promise<Uint8Array> {
  const lh = Buffer.alloc(ZIP_LOCAL_HEADER_BYTES);
  await fh.read(lh, 0, ZIP_LOCAL_HEADER_BYTES, entry.localHeaderOffset);
  if (lh.readUInt32LE(0) !== 0x04034b50) throw bad(file, `corrupt zip local header for ${entry.name}`);
  const start = entry.localHeaderOffset + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
  if (start + entry.compressedSize > fileSize) throw bad(file, `zip entry ${entry.name} is truncated`);
  const data = Buffer.alloc(entry.compressedSize);
  await fh.read(data, 0, entry.compressedSize, start);
  if (entry.method === 0) return data;
  if (entry.method === 8) {
    try {
      // never more than the directory declared (itself bounded by the compressed size): a zip bomb stops here
      const out = inflateRawSync(data, { maxOutputLength: Math.max(1, entry.size) });
      if (out.length !== entry.size) throw new Error(`inflated to ${out.length} bytes, the directory says ${entry.size}`);
      return out;
    } catch (e) {
      throw bad(file, `cannot inflate ${entry.name}: ${errorMessage(e)}`);
    }
  }
  throw bad(file, `zip entry ${entry.name} uses unsupported compression method ${entry.method}`);
}

async function readZipTorch(file: string, fileSize: number): Promise<TorchFile> {
  const fh = await open(file, 'r');
  try {
    const entries = await readZipDirectory(fh, fileSize, file);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const pkl = entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name)) ?? entries.find((e) => e.name === 'data.pkl');
    if (!pkl) {
      const ts = entries.some((e) => e.name.endsWith('constants.pkl'));
      throw bad(
        file,
        ts
          ? 'this is a TorchScript archive (torch.jit.save); save the state_dict with torch.save instead'
          : 'zip archive without data.pkl: not a PyTorch checkpoint',
      );
    }
    const root = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
    const bo = byName.get(`${root}byteorder`);
    const bigEndian = bo
      ? Buffer.from(await readZipEntry(fh, bo, fileSize, file))
          .toString('ascii')
          .trim() === 'big'
      : false;
    const storages = new Map<string, StorageRef>();
    const tensors: TorchTensor[] = [];
    const { value } = unpickle(await readZipEntry(fh, pkl, fileSize, file), 0, {
      source: file,
      globals: torchGlobals(file, tensors),
      persistentLoad: makePersistentLoad(file, storages),
    });
    for (const s of storages.values()) {
      const entry = byName.get(`${root}data/${s.key}`);
      if (!entry) throw bad(file, `storage data/${s.key} is missing from the archive`);
      s.bytes = await readZipEntry(fh, entry, fileSize, file);
    }
    materialise(tensors, file, bigEndian);
    return { format: 'zip', value, tensors: collectTensors(value, '', file) };
  } finally {
    await fh.close();
  }
}

/**
 * The bytes of the one entry of a zip archive whose name matches `pattern` (e.g. the frozen graph inside
 * deepspeech-0_1_0-b90017e8.pb.zip), read with the same bounds as zip checkpoints. None or several matches is an error.
 */
export async function readZipMember(file: string, pattern: RegExp): Promise<{ name: string; bytes: Uint8Array }> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    throw new DifftalkError('not-found', `${file}: no such file`);
  }
  const fh = await open(file, 'r');
  try {
    const entries = (await readZipDirectory(fh, size, file)).filter((e) => pattern.test(e.name));
    if (entries.length !== 1) throw bad(file, `the zip archive has ${entries.length} entries matching ${pattern} (expected one)`);
    return { name: entries[0]!.name, bytes: await readZipEntry(fh, entries[0]!, size, file) };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// legacy format

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

function readLegacyTorch(file: string, buf: Uint8Array): TorchFile {
  const magic = unpickle(buf, 0, { source: file });
  if (magic.value !== LEGACY_MAGIC) throw bad(file, 'not a PyTorch file (legacy magic number missing)');
  const proto = unpickle(buf, magic.end, { source: file });
  if (proto.value !== 1001) throw bad(file, `unsupported legacy protocol version ${String(proto.value)}`);
  const sys = unpickle(buf, proto.end, { source: file });
  const bigEndian = sys.value instanceof Map && sys.value.get('little_endian') === false;
  const storages = new Map<string, StorageRef>();
  const tensors: TorchTensor[] = [];
  const obj = unpickle(buf, sys.end, { source: file, globals: torchGlobals(file, tensors), persistentLoad: makePersistentLoad(file, storages) });
  const keys = unpickle(buf, obj.end, { source: file });
  if (!Array.isArray(keys.value)) throw bad(file, 'legacy storage key list missing');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = keys.end;
  for (const k of keys.value) {
    const s = storages.get(String(k));
    if (!s) throw bad(file, `storage ${String(k)} is listed but never referenced`);
    if (p + 8 > buf.length) throw bad(file, `truncated before storage ${s.key}`);
    const count = Number(view.getBigInt64(p, !bigEndian));
    p += 8;
    const nbytes = count * ELEMENT_SIZE[s.dtype];
    if (count < 0 || p + nbytes > buf.length) throw bad(file, `storage ${s.key} is truncated (${count} elements declared)`);
    s.bytes = buf.subarray(p, p + nbytes);
    p += nbytes;
  }
  materialise(tensors, file, bigEndian);
  return { format: 'legacy', value: obj.value, tensors: collectTensors(obj.value, '', file) };
}

/** Read a PyTorch file (zip or legacy). Throws DifftalkError('bad-torch-file' | 'bad-pickle' | 'not-found'). */
export async function readTorchFile(file: string): Promise<TorchFile> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    throw new DifftalkError('not-found', `${file}: no such file`);
  }
  const head = Buffer.alloc(4);
  const fh = await open(file, 'r');
  try {
    await fh.read(head, 0, Math.min(4, size), 0);
  } finally {
    await fh.close();
  }
  if (head.readUInt32LE(0) === 0x04034b50) return readZipTorch(file, size);
  if (head[0] === 0x80) return readLegacyTorch(file, new Uint8Array(await readFile(file)));
  throw bad(file, 'neither a zip-format nor a legacy-format PyTorch file');
}
