/**
 * A Python pickle writer (protocol 2), the inverse of {@link unpickle} for the subset PyTorch checkpoints use:
 * None, bool, int (any size), float, str, bytes, list, tuple, dict, `collections.OrderedDict`, calls of a global
 * (REDUCE, e.g. `torch._utils._rebuild_tensor_v2`) and persistent ids (PyTorch storages).
 *
 * JavaScript → Python: null→None, boolean→bool, integer number / bigint→int, non-integer number→float (use
 * {@link PyFloat} for an integral float), string→str, Uint8Array→bytes, Array→list, {@link PyTuple}→tuple,
 * Map→dict (keys in insertion order), {@link PyOrderedDict}→OrderedDict, {@link PyReduce}→global(*args),
 * {@link PyPersistent}→persistent id. Nothing else is accepted (a clear error, never a silent `repr`).
 *
 * torch 1.13's `weights_only` unpickler has no BINFLOAT, BINBYTES or LONG4: a checkpoint meant for it holds no floats,
 * bytes or integers wider than 255 bytes (ints, strings, tensors, dicts and tuples only).
 */
import { DifftalkError } from '../util/errors.js';

export class PyTuple {
  constructor(readonly items: readonly PickleValue[]) {}
}
export class PyFloat {
  constructor(readonly value: number) {}
}
export class PyOrderedDict {
  constructor(readonly entries: ReadonlyMap<PickleValue, PickleValue>) {}
}
/** `module.name(*args)`: GLOBAL + args tuple + REDUCE. */
export class PyReduce {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: readonly PickleValue[],
  ) {}
}
/** A bare global reference (GLOBAL), e.g. `torch.FloatStorage` inside a storage's persistent id. */
export class PyGlobalRef {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}
/** A persistent id (BINPERSID): the unpickler's persistent_load receives `pid`. */
export class PyPersistent {
  constructor(readonly pid: PickleValue) {}
}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | PyTuple
  | PyFloat
  | PyOrderedDict
  | PyReduce
  | PyGlobalRef
  | PyPersistent;

const OP = {
  PROTO: 0x80,
  STOP: 0x2e,
  NONE: 0x4e,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINFLOAT: 0x47,
  BINUNICODE: 0x58,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  EMPTY_LIST: 0x5d,
  APPENDS: 0x65,
  EMPTY_TUPLE: 0x29,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  TUPLE: 0x74,
  MARK: 0x28,
  EMPTY_DICT: 0x7d,
  SETITEMS: 0x75,
  GLOBAL: 0x63,
  REDUCE: 0x52,
  BINPERSID: 0x51,
} as const;

/** Python batches APPENDS/SETITEMS by 1000 items; so does this writer. */
const BATCH = 1000;

class Writer {
  private chunks: Uint8Array[] = [];
  private buf = Buffer.alloc(64 * 1024);
  private pos = 0;
  private depth = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.chunks.push(this.buf.subarray(0, this.pos));
    this.buf = Buffer.alloc(Math.max(64 * 1024, n));
    this.pos = 0;
  }
  op(code: number): void {
    this.room(1);
    this.buf[this.pos++] = code;
  }
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }
  finish(): Uint8Array {
    this.chunks.push(this.buf.subarray(0, this.pos));
    return Buffer.concat(this.chunks);
  }

  int(v: number | bigint): void {
    const b = BigInt(v);
    if (b >= 0n && b < 256n) {
      this.raw(Uint8Array.of(OP.BININT1, Number(b)));
    } else if (b >= 0n && b < 65536n) {
      this.raw(Uint8Array.of(OP.BININT2, Number(b) & 0xff, Number(b) >> 8));
    } else if (b >= -(2n ** 31n) && b < 2n ** 31n) {
      this.op(OP.BININT);
      this.room(4);
      this.buf.writeInt32LE(Number(b), this.pos);
      this.pos += 4;
    } else {
      // two's complement little-endian, the fewest bytes that keep the sign (Python's encode_long)
      const bytes: number[] = [];
      let x = b;
      while (true) {
        bytes.push(Number(x & 0xffn));
        x >>= 8n;
        if ((x === 0n && (bytes[bytes.length - 1]! & 0x80) === 0) || (x === -1n && (bytes[bytes.length - 1]! & 0x80) !== 0)) break;
      }
      if (bytes.length < 256) this.raw(Uint8Array.of(OP.LONG1, bytes.length));
      else {
        this.op(OP.LONG4);
        this.u32(bytes.length);
      }
      this.raw(Uint8Array.from(bytes));
    }
  }
  float(v: number): void {
    this.op(OP.BINFLOAT);
    this.room(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.op(OP.BINUNICODE);
    this.u32(b.length);
    this.raw(b);
  }
  global(module: string, name: string): void {
    if (/[\n\r]/.test(module + name)) throw new DifftalkError('bad-pickle', `cannot pickle a global named ${JSON.stringify(`${module}.${name}`)}`);
    this.op(OP.GLOBAL);
    this.raw(Buffer.from(`${module}\n${name}\n`, 'utf8'));
  }
  tuple(items: readonly PickleValue[]): void {
    if (items.length === 0) return this.op(OP.EMPTY_TUPLE);
    if (items.length <= 3) {
      for (const it of items) this.value(it);
      return this.op([OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][items.length - 1]!);
    }
    this.op(OP.MARK);
    for (const it of items) this.value(it);
    this.op(OP.TUPLE);
  }
  items(entries: Iterable<[PickleValue, PickleValue]>): void {
    let n = 0;
    for (const [k, v] of entries) {
      if (n === 0) this.op(OP.MARK);
      this.value(k);
      this.value(v);
      if (++n === BATCH) {
        this.op(OP.SETITEMS);
        n = 0;
      }
    }
    if (n > 0) this.op(OP.SETITEMS);
  }

  value(v: PickleValue): void {
    if (++this.depth > 1000) throw new DifftalkError('bad-pickle', 'cannot pickle containers nested deeper than 1000 levels');
    try {
      this.valueUnchecked(v);
    } finally {
      this.depth--;
    }
  }

  private valueUnchecked(v: PickleValue): void {
    if (v === null) return this.op(OP.NONE);
    if (typeof v === 'boolean') return this.op(v ? OP.NEWTRUE : OP.NEWFALSE);
    if (typeof v === 'bigint') return this.int(v);
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) return this.int(v);
      return this.float(v);
    }
    if (typeof v === 'string') return this.str(v);
    if (v instanceof PyFloat) return this.float(v.value);
    if (v instanceof Uint8Array) {
      if (v.length < 256) this.raw(Uint8Array.of(OP.SHORT_BINBYTES, v.length));
      else {
        this.op(OP.BINBYTES);
        this.u32(v.length);
      }
      return this.raw(v);
    }
    if (Array.isArray(v)) {
      this.op(OP.EMPTY_LIST);
      for (let i = 0; i < v.length; i += BATCH) {
        this.op(OP.MARK);
        for (const it of v.slice(i, i + BATCH)) this.value(it);
        this.op(OP.APPENDS);
      }
      return;
    }
    if (v instanceof PyTuple) return this.tuple(v.items);
    if (v instanceof Map) {
      this.op(OP.EMPTY_DICT);
      return this.items(v.entries());
    }
    if (v instanceof PyOrderedDict) {
      this.global('collections', 'OrderedDict');
      this.op(OP.EMPTY_TUPLE);
      this.op(OP.REDUCE);
      return this.items(v.entries.entries());
    }
    if (v instanceof PyReduce) {
      this.global(v.module, v.name);
      this.tuple(v.args);
      return this.op(OP.REDUCE);
    }
    if (v instanceof PyGlobalRef) return this.global(v.module, v.name);
    if (v instanceof PyPersistent) {
      this.value(v.pid);
      return this.op(OP.BINPERSID);
    }
    throw new DifftalkError('bad-pickle', `cannot pickle a value of type ${Object.prototype.toString.call(v)}`);
  }
}

/** Pickle `value` (protocol 2): PROTO 2, the value, STOP. */
export function pickle(value: PickleValue): Uint8Array {
  const w = new Writer();
  w.raw(Uint8Array.of(OP.PROTO, 2));
  w.value(value);
  w.op(OP.STOP);
  return w.finish();
}
