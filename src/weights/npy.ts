/**
 * NumPy `.npy` writer (format version 1.0): little-endian float32 arrays in C order, the header padded so the data
 * starts at a multiple of 64 bytes, as numpy.lib.format writes it. Used by `difftalk export` (audio_smooth/*.npy).
 */
import { DifftalkError } from '../util/errors.js';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const VERSION_1_0 = Buffer.from([1, 0]);
/** numpy aligns the start of the data to this many bytes. */
const ALIGN = 64;
/** Format 1.0 stores the header length in 2 bytes. */
const MAX_HEADER_1_0 = 0xffff;

/** A float32 array of `shape` (C order) as the bytes of a .npy file. */
export function encodeNpyFloat32(shape: readonly number[], data: Float32Array): Buffer {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0) || n !== data.length) {
    throw new DifftalkError('bad-shape', `npy: shape [${shape.join(', ')}] does not hold ${data.length} values`);
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const fixed = MAGIC.length + VERSION_1_0.length + 2;
  const total = Math.ceil((fixed + header.length + 1) / ALIGN) * ALIGN;
  header = header.padEnd(total - fixed - 1, ' ') + '\n';
  if (header.length > MAX_HEADER_1_0) throw new DifftalkError('bad-shape', 'npy: header too long for format 1.0');
  const len = Buffer.alloc(2);
  len.writeUInt16LE(header.length);
  const body = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) body.writeFloatLE(data[i]!, i * 4);
  return Buffer.concat([MAGIC, VERSION_1_0, len, Buffer.from(header, 'latin1'), body]);
}
