/**
 * Test helper: small hostile files, each crafted to make a naive reader allocate or compute far more than its size.
 * Deterministic (no randomness); written by `writeHostileFiles(dir)`.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { deflateRawSync, constants as zc } from 'node:zlib';
import { writeZip } from './zip-writer.js';

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const str = (s: string): Buffer => Buffer.concat([Buffer.from([0x58]), u32(Buffer.byteLength(s)), Buffer.from(s)]); // BINUNICODE
const glob = (m: string, n: string): Buffer => Buffer.from(`c${m}\n${n}\n`, 'latin1'); // GLOBAL
const PROTO2 = Buffer.from([0x80, 0x02]);
const STOP = Buffer.from('.');

/** data.pkl of `{'w': tensor of shape [n] with stride [0] over a 1-element float storage}` (what x.expand(n) saves). */
function strideZeroPickle(n: number): Buffer {
  const binint = Buffer.concat([Buffer.from([0x4a]), u32(n)]);
  return Buffer.concat([
    PROTO2,
    Buffer.from('}('), // EMPTY_DICT MARK
    str('w'),
    glob('torch._utils', '_rebuild_tensor_v2'),
    Buffer.from('(('), // MARK MARK (args tuple, then persistent id tuple)
    str('storage'),
    glob('torch', 'FloatStorage'),
    str('0'),
    str('cpu'),
    Buffer.from([0x4b, 1]), // BININT1 1 (numel)
    Buffer.from('tQ'), // TUPLE, BINPERSID
    Buffer.from([0x4b, 0]), // offset 0
    binint,
    Buffer.from([0x85]), // TUPLE1 (size)
    Buffer.from([0x4b, 0, 0x85]), // (0,) stride
    Buffer.from([0x89]), // False
    glob('collections', 'OrderedDict'),
    Buffer.from(')R'), // OrderedDict()
    Buffer.from('tR'), // TUPLE, REDUCE
    Buffer.from('u'), // SETITEMS
    STOP,
  ]);
}

/** A stored zip entry list with the given central-directory size fields overridden. */
function zipWithLyingSize(name: string, deflated: Buffer, declaredSize: number): Buffer {
  const n = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(8, 8);
  local.writeUInt32LE(deflated.length, 18);
  local.writeUInt32LE(declaredSize, 22);
  local.writeUInt16LE(n.length, 26);
  const cd = Buffer.alloc(46);
  cd.writeUInt32LE(0x02014b50, 0);
  cd.writeUInt16LE(8, 10);
  cd.writeUInt32LE(deflated.length, 20);
  cd.writeUInt32LE(declaredSize, 24);
  cd.writeUInt16LE(n.length, 28);
  const body = Buffer.concat([local, n, deflated]);
  const cdBuf = Buffer.concat([cd, n]);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(1, 8);
  eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(body.length, 16);
  return Buffer.concat([body, cdBuf, eocd]);
}

/** A raw-deflate stream of `mib` MiB of zeros, built by repeating one fully flushed 1 MiB block (about 1 KB each). */
function zeroBomb(mib: number): Buffer {
  const MIB = 1024 * 1024;
  const block = deflateRawSync(Buffer.alloc(MIB), { finishFlush: zc.Z_FULL_FLUSH });
  const end = deflateRawSync(Buffer.alloc(0));
  return Buffer.concat([...Array.from({ length: mib }, () => block), end]);
}

export interface HostileFile {
  file: string;
  /** What reads it: 'torch' (readTorchFile + toPlain), 'pickle' (unpickle), 'json' (readJson). */
  reader: 'torch' | 'pickle' | 'json' | 'safetensors';
  /** The DifftalkError code expected now. */
  code: string;
  /** What the code before this change did with it (issue 11's audit numbers, or the failure read from the old code; not rerun here: some exhaust the machine). */
  before: string;
}

/** Write every hostile file into `dir`. */
export function writeHostileFiles(dir: string): HostileFile[] {
  const out: HostileFile[] = [];
  const put = (name: string, data: Buffer | string, reader: HostileFile['reader'], code: string, before: string): void => {
    const file = path.join(dir, name);
    writeFileSync(file, data);
    out.push({ file, reader, code, before });
  };
  const VIEW_ELEMENTS = 1_000_000_000;
  put(
    'stride0.pth',
    writeZip([
      { name: 'archive/data.pkl', data: strideZeroPickle(VIEW_ELEMENTS) },
      { name: 'archive/data/0', data: Buffer.alloc(4) },
    ]),
    'torch',
    'bad-torch-file',
    'a ~600-byte file: Float32Array(1e9), 3.9 GB (torch.load shares the storage: 4 bytes)',
  );
  const BOMB_MIB = 1024;
  put(
    'bomb.pth',
    zipWithLyingSize('archive/data.pkl', zeroBomb(BOMB_MIB), 4),
    'torch',
    'bad-torch-file',
    'a ~1 MB zip declaring 4 bytes: inflated 1 GiB before looking at it',
  );
  const one = writeZip([{ name: 'archive/data.pkl', data: Buffer.alloc(4) }]);
  // overlapping entries: the central directory lists the same local entry many times
  {
    const eocd = one.length - 22;
    const cdOff = one.readUInt32LE(eocd + 16);
    const cd = one.subarray(cdOff, eocd);
    const COPIES = 1000;
    const cds = Buffer.concat(Array.from({ length: COPIES }, () => cd));
    const e = Buffer.from(one.subarray(eocd));
    e.writeUInt16LE(COPIES, 8);
    e.writeUInt16LE(COPIES, 10);
    e.writeUInt32LE(cds.length, 12);
    put(
      'overlap.pth',
      Buffer.concat([one.subarray(0, cdOff), cds, e]),
      'torch',
      'bad-torch-file',
      'each copy read again (with a deflated bomb: copies × 1 GiB)',
    );
  }
  {
    // an entry count far beyond what the directory can hold
    const b = Buffer.from(one);
    const eocd = b.length - 22;
    b.writeUInt16LE(0xfffe, eocd + 8);
    b.writeUInt16LE(0xfffe, eocd + 10);
    put('count.pth', b, 'torch', 'bad-torch-file', 'RangeError (reads past the directory buffer)');
  }
  const LONG_BYTES = 300_000;
  put(
    'long4.pkl',
    Buffer.concat([PROTO2, Buffer.from([0x8b]), u32(LONG_BYTES), Buffer.alloc(LONG_BYTES, 0x7f), STOP]),
    'pickle',
    'bad-pickle',
    '76 s of CPU (quadratic bigint build); CPython: 0.3 ms',
  );
  const DEPTH = 200_000;
  put(
    'deep.pth',
    writeZip([{ name: 'archive/data.pkl', data: Buffer.concat([PROTO2, Buffer.alloc(DEPTH, 0x5d), Buffer.alloc(DEPTH - 1, 0x61), STOP]) }]),
    'torch',
    'bad-pickle',
    'RangeError: Maximum call stack size exceeded',
  );
  // a list that contains itself twice, nested: l = [l, l]; printing it expands 2^depth values
  put(
    'cycle.pth',
    writeZip([{ name: 'archive/data.pkl', data: Buffer.concat([PROTO2, Buffer.from([0x5d, 0x71, 0, 0x28, 0x68, 0, 0x68, 0, 0x65]), STOP]) }]),
    'torch',
    'bad-pickle',
    'toPlain recursed forever: RangeError',
  );
  {
    // a header that claims a 4 GB tensor in a 100-byte file
    const header = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [VIEW_ELEMENTS], data_offsets: [0, 4 * VIEW_ELEMENTS] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    put(
      'huge.safetensors',
      Buffer.concat([len, header, Buffer.alloc(4)]),
      'safetensors',
      'bad-safetensors',
      'refused already (offsets checked against the file)',
    );
  }
  put('truncated.json', '{"clips": [{"id": "a", "frames": 3}, {"id": "b"', 'json', 'bad-json', 'SyntaxError: Unexpected end of JSON input');
  put(
    'deep.json',
    '['.repeat(DEPTH) + ']'.repeat(DEPTH),
    'json',
    'bad-json',
    'parsed (V8 is iterative) into 200k nested arrays; callers recursing on it hit RangeError',
  );
  out.push({ file: dir, reader: 'json', code: 'bad-json', before: 'EISDIR: illegal operation on a directory' });
  return out;
}
