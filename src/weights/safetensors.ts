/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors, format spec in its README):
 * 8-byte little-endian u64 N, an N-byte UTF-8 JSON header `{"__metadata__": {str: str}, name: {dtype, shape,
 * data_offsets: [begin, end]}}` (offsets relative to the byte buffer that follows), then the tensor bytes,
 * little-endian, row-major, contiguous and without holes.
 *
 * The writer does what the reference Rust writer does: tensors ordered by element size (largest first) then name,
 * so every tensor is aligned to its element size, and the header padded with spaces (0x20) to a multiple of 8 bytes.
 */
import { readFile } from 'node:fs/promises';
import { DifftalkError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { decodeElements, ELEMENT_SIZE, type TensorArray, type TensorData, type TorchDtype } from './torch.js';

const ST_TO_DTYPE: Record<string, TorchDtype> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const DTYPE_TO_ST = Object.fromEntries(Object.entries(ST_TO_DTYPE).map(([k, v]) => [v, k])) as Record<TorchDtype, string>;

export interface SafetensorsFile {
  tensors: Map<string, TensorData>;
  metadata: Record<string, string>;
}

/** Largest header the reader accepts (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;

function bad(source: string, msg: string): DifftalkError {
  return new DifftalkError('bad-safetensors', `${source}: ${msg}`, { suggestion: 'The file is not a valid .safetensors file; re-create or re-import it.' });
}

/** Parse a whole safetensors file held in memory. */
export function parseSafetensors(buf: Uint8Array, source = 'safetensors'): SafetensorsFile {
  if (buf.length < 8) throw bad(source, 'file shorter than the 8-byte header length');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER) || 8 + Number(n) > buf.length) throw bad(source, `header length ${n} is invalid for a ${buf.length}-byte file`);
  const headerEnd = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, headerEnd)));
  } catch {
    throw bad(source, 'header is not valid UTF-8 JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad(source, 'header is not a JSON object');
  const data = buf.subarray(headerEnd);
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: TorchDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (info === null || typeof info !== 'object') throw bad(source, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(source, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = typeof t?.dtype === 'string' ? ST_TO_DTYPE[t.dtype] : undefined;
    if (!dtype) throw bad(source, `tensor ${name}: unsupported dtype ${String(t?.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw bad(source, `tensor ${name}: bad shape`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) {
      throw bad(source, `tensor ${name}: bad data_offsets`);
    }
    const shape = t.shape as number[];
    const nbytes = shape.reduce((a, b) => a * b, 1) * ELEMENT_SIZE[dtype];
    if (off[1] - off[0] !== nbytes) throw bad(source, `tensor ${name}: data_offsets span ${off[1] - off[0]} bytes, shape and dtype need ${nbytes}`);
    entries.push({ name, dtype, shape, begin: off[0], end: off[1] });
  }
  // the byte buffer must be covered exactly, without holes or overlaps
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin !== pos) throw bad(source, `tensor ${e.name}: data_offsets leave a hole or overlap at byte ${pos}`);
    pos = e.end;
  }
  if (pos !== data.length) throw bad(source, `tensor data is ${data.length} bytes, header covers ${pos}`);
  const tensors = new Map<string, TensorData>();
  for (const e of entries) tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: decodeElements(data.subarray(e.begin, e.end), e.dtype) });
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch {
    throw new DifftalkError('not-found', `${file}: no such file`);
  }
  return parseSafetensors(buf, file);
}

/** float32 → IEEE half bits, round to nearest even (as torch's .half()). */
export function floatToHalfBits(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** float32 → bfloat16 bits, round to nearest even. */
export function floatToBfloat16Bits(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The little-endian bytes of a tensor in its dtype (float16/bfloat16 data given as float32 values). */
export function tensorBytes(t: TensorData): Uint8Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new DifftalkError('bad-tensor', `tensor of shape [${t.shape}] has ${t.data.length} elements`);
  const expect: Record<TorchDtype, string> = {
    float32: 'Float32Array',
    float64: 'Float64Array',
    float16: 'Float32Array',
    bfloat16: 'Float32Array',
    int64: 'BigInt64Array',
    int32: 'Int32Array',
    int16: 'Int16Array',
    int8: 'Int8Array',
    uint8: 'Uint8Array',
    bool: 'Uint8Array',
  };
  if (t.data.constructor.name !== expect[t.dtype] && !(t.data instanceof Uint8Array && expect[t.dtype] === 'Uint8Array')) {
    throw new DifftalkError('bad-tensor', `a ${t.dtype} tensor needs a ${expect[t.dtype]}, got ${t.data.constructor.name}`);
  }
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') {
    const conv = t.dtype === 'float16' ? floatToHalfBits : floatToBfloat16Bits;
    const u = new Uint16Array(n);
    for (let i = 0; i < n; i++) u[i] = conv((t.data as Float32Array)[i]!);
    return new Uint8Array(u.buffer);
  }
  if (t.dtype === 'bool') return (t.data as Uint8Array).map((x) => (x ? 1 : 0));
  const a = t.data as Exclude<TensorArray, BigInt64Array> | BigInt64Array;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Encode tensors (+ string metadata) as a complete safetensors file. */
export function encodeSafetensors(tensors: Map<string, TensorData> | Record<string, TensorData>, metadata: Record<string, string> = {}): Uint8Array {
  const list = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).map(([name, t]) => ({ name, t, bytes: tensorBytes(t) }));
  if (list.some((e) => e.name === '__metadata__')) throw new DifftalkError('bad-tensor', 'a tensor cannot be named __metadata__');
  list.sort((a, b) => ELEMENT_SIZE[b.t.dtype] - ELEMENT_SIZE[a.t.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let pos = 0;
  for (const e of list) {
    header[e.name] = { dtype: DTYPE_TO_ST[e.t.dtype], shape: e.t.shape, data_offsets: [pos, pos + e.bytes.length] };
    pos += e.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let p = 8 + padded;
  for (const e of list) {
    out.set(e.bytes, p);
    p += e.bytes.length;
  }
  return out;
}

/** Write a safetensors file atomically. */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, TensorData> | Record<string, TensorData>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
