/**
 * A minimal, safe Python pickle reader (protocols 0–5) for PyTorch checkpoints.
 *
 * Nothing is ever executed: a GLOBAL is looked up in a whitelist of pure implementations supplied by the caller
 * (`globals`), plus a few built-in ones (OrderedDict, _codecs.encode, set, frozenset, bytearray). Any other global
 * becomes an inert {@link PyGlobal}; calling it (REDUCE / NEWOBJ) builds an inert {@link PyObject} that records the
 * class name, arguments and state, so unusual checkpoint entries (argparse.Namespace, Lightning callbacks…) load as
 * data instead of failing.
 *
 * Python → JavaScript: None→null, bool→boolean, int→number (bigint beyond ±2^53), float→number, str→string,
 * bytes→Uint8Array, list→Array, tuple→frozen Array, dict/OrderedDict→Map (insertion order kept), set→Set.
 */
import { DifftalkError } from '../util/errors.js';

/** A class or function referenced by a pickle that is not on the whitelist (never called). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a non-whitelisted class: its constructor arguments and the state BUILD gave it. */
export class PyObject {
  state: unknown = undefined;
  readonly listItems: unknown[] = [];
  readonly dictItems = new Map<unknown, unknown>();
  constructor(
    readonly cls: PyGlobal,
    readonly args: readonly unknown[],
  ) {}
}

/** A whitelisted global: a pure function of its (already unpickled) arguments. */
export type PyCallable = (args: readonly unknown[]) => unknown;

export interface UnpickleOptions {
  /** Whitelisted globals by `module.name`, checked before the built-in ones. */
  globals?: Record<string, PyCallable>;
  /** PyTorch storages: called with the persistent id (BINPERSID / PERSID). */
  persistentLoad?: (pid: unknown) => unknown;
  /** A name for error messages (the file). */
  source?: string;
}

const BUILTIN_GLOBALS: Record<string, PyCallable> = {
  'collections.OrderedDict': (args) => {
    const m = new Map<unknown, unknown>();
    const init = args[0];
    if (Array.isArray(init)) for (const kv of init) if (Array.isArray(kv)) m.set(kv[0], kv[1]);
    return m;
  },
  'builtins.set': (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  'builtins.frozenset': (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
  'builtins.bytearray': (args) => (args[0] instanceof Uint8Array ? args[0] : new Uint8Array(0)),
  'builtins.slice': (args) => Object.freeze([...args]),
  // protocol-2 pickles of Python-3 bytes: _codecs.encode(latin1_text, 'latin1')
  '_codecs.encode': (args) => {
    const s = String(args[0] ?? '');
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
    return out;
  },
};
for (const k of ['set', 'frozenset', 'bytearray', 'slice']) BUILTIN_GLOBALS[`__builtin__.${k}`] = BUILTIN_GLOBALS[`builtins.${k}`]!;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function tuple(items: unknown[]): readonly unknown[] {
  return Object.freeze(items);
}

function int(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Limits on what a pickle may make the reader compute. Python decodes LONG4 in linear time; a bigint built byte by
 * byte is quadratic (a 300 KB LONG4 took 76 s), so LONG1/LONG4 go through one hex string (linear) and are capped;
 * decimal INT/LONG text follows CPython's `sys.int_info.default_max_str_digits` (4300).
 */
export const PICKLE_LIMITS = {
  /** Bytes of one LONG1/LONG4 integer (no checkpoint holds an integer wider than a few words). */
  maxLongBytes: 4096,
  /** Decimal digits of one INT/LONG text argument (CPython's default int-from-string limit). */
  maxIntDigits: 4300,
  /** Depth of nested containers a caller walks (see {@link assertDepth}). */
  maxDepth: 1000,
} as const;

/** Two's-complement little-endian integer of any length (LONG1 / LONG4), in time linear in its length. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  const hex = Buffer.from(bytes).reverse().toString('hex');
  let v = BigInt(`0x${hex}`);
  if (bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return int(v);
}

/** Result of {@link unpickle}: the value and the offset just after the STOP opcode. */
export interface UnpickleResult {
  value: unknown;
  end: number;
}

/**
 * Unpickle one object from `buf` starting at `offset`. Throws DifftalkError('bad-pickle') on corrupt or unsupported
 * input (truncated data, stack underflow, unknown opcode, extension codes, out-of-band buffers).
 */
export function unpickle(buf: Uint8Array, offset = 0, options: UnpickleOptions = {}): UnpickleResult {
  try {
    return unpickleUnchecked(buf, offset, options);
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    // e.g. a RangeError from a Map past V8's size limit: still one clear error, never a raw exception
    throw new DifftalkError('bad-pickle', `${options.source ?? 'pickle'}: cannot be read (${e instanceof Error ? e.message : String(e)})`, {
      suggestion: 'The file is not a valid PyTorch/pickle file or is truncated; re-download it.',
      cause: e,
    });
  }
}

/** Throw DifftalkError('bad-pickle') when a walk over unpickled containers goes deeper than PICKLE_LIMITS.maxDepth. */
export function assertDepth(depth: number, source: string): void {
  if (depth > PICKLE_LIMITS.maxDepth) {
    throw new DifftalkError('bad-pickle', `${source}: containers nested deeper than ${PICKLE_LIMITS.maxDepth} levels`, {
      suggestion: 'The file is not a checkpoint difftalk can read (no model file nests this deep).',
    });
  }
}

function unpickleUnchecked(buf: Uint8Array, offset: number, options: UnpickleOptions): UnpickleResult {
  const src = options.source ?? 'pickle';
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const fail = (msg: string, at: number): never => {
    throw new DifftalkError('bad-pickle', `${src}: ${msg} at byte ${at}`, {
      suggestion: 'The file is not a valid PyTorch/pickle file or is truncated; re-download it.',
    });
  };
  let p = offset;
  const need = (n: number): void => {
    if (p + n > buf.length) fail(`unexpected end of data (needs ${n} more bytes)`, p);
  };
  const u8 = (): number => {
    need(1);
    return buf[p++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(p, true);
    p += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(p, true);
    p += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(p, true);
    p += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('length too large', p - 8);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = buf.subarray(p, p + n);
    p += n;
    return b;
  };
  const text = (n: number): string => {
    const b = bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail('invalid UTF-8 string', p - n);
    }
  };
  const line = (): string => {
    const nl = buf.indexOf(0x0a, p);
    if (nl < 0) fail('unterminated text argument', p);
    const s = Buffer.from(buf.buffer, buf.byteOffset + p, nl - p).toString('latin1');
    p = nl + 1;
    return s;
  };

  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const at0 = (): number => p - 1;
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) fail('stack underflow', at0());
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow', at0());
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('MARK missing', at0());
    return stack.splice(m!);
  };
  const findGlobal = (module: string, name: string): unknown => {
    const key = `${module}.${name}`;
    const fn = options.globals?.[key] ?? BUILTIN_GLOBALS[key];
    return fn ?? new PyGlobal(module, name);
  };
  const call = (fn: unknown, args: unknown, at: number): unknown => {
    if (!Array.isArray(args)) fail('REDUCE arguments are not a tuple', at);
    if (typeof fn === 'function') return (fn as PyCallable)(args as unknown[]);
    if (fn instanceof PyGlobal) return new PyObject(fn, args as unknown[]);
    return fail('REDUCE on a value that is not a class or function', at);
  };
  const setItems = (target: unknown, kvs: unknown[], at: number): void => {
    if (kvs.length % 2) fail('odd number of items for SETITEMS', at);
    const m = target instanceof Map ? target : target instanceof PyObject ? target.dictItems : fail('SETITEM on a non-dict', at);
    for (let i = 0; i < kvs.length; i += 2) m.set(kvs[i], kvs[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[], at: number): void => {
    if (Array.isArray(target)) {
      if (Object.isFrozen(target)) fail('APPEND to a tuple', at);
      for (const x of items) target.push(x);
    } else if (target instanceof Set) for (const x of items) target.add(x);
    else if (target instanceof PyObject) for (const x of items) target.listItems.push(x);
    else fail('APPEND on a non-list', at);
  };

  for (;;) {
    const at = p;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('pickle protocol > 5', at);
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail('malformed pickle (stack not empty at STOP)', at);
        return { value: stack[0], end: p };
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (marks.length && stack.length === marks[marks.length - 1]) marks.pop();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(view.getInt32(p, true));
        p += 4;
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = u32();
        if (n > PICKLE_LIMITS.maxLongBytes) fail(`integer of ${n} bytes (limit ${PICKLE_LIMITS.maxLongBytes})`, at);
        stack.push(decodeLong(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x49: {
        // INT (text); 'I01'/'I00' are protocol-0 booleans
        const s = line().trim();
        if (s === '01') stack.push(true);
        else if (s === '00') stack.push(false);
        else if (!/^[+-]?\d+$/.test(s) || s.length > PICKLE_LIMITS.maxIntDigits) fail('bad INT', at);
        else stack.push(int(BigInt(s)));
        break;
      }
      case 0x4c: {
        // LONG (text)
        const s = line().trim().replace(/L$/, '');
        if (!/^[+-]?\d+$/.test(s) || s.length > PICKLE_LIMITS.maxIntDigits) fail('bad LONG', at);
        stack.push(int(BigInt(s)));
        break;
      }
      case 0x46: {
        // FLOAT (text)
        const v = Number(line().trim());
        if (Number.isNaN(v)) fail('bad FLOAT', at);
        stack.push(v);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x56: // UNICODE (raw-unicode-escape line)
        stack.push(line().replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_m, a: string, b: string) => String.fromCodePoint(parseInt(a ?? b, 16))));
        break;
      case 0x54: // BINSTRING (Python 2 str, decoded as latin1)
        stack.push(Buffer.from(bytes(u32())).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(bytes(u8())).toString('latin1'));
        break;
      case 0x53: {
        // STRING (quoted repr)
        const s = line().trim();
        stack.push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        fail('out-of-band pickle buffers are not supported', at);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(tuple([]));
        break;
      case 0x85: // TUPLE1
        stack.push(tuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(tuple([a, b, c]));
        break;
      }
      case 0x74: // TUPLE
        stack.push(tuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const m = new Map();
        setItems(m, popMark(), at);
        stack.push(m);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        appendItems(top(), items, at);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v], at);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items, at);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v], at);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kvs = popMark();
        setItems(top(), kvs, at);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: {
        // GET
        const idx = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(idx)) fail(`memo key ${idx} missing`, at);
        stack.push(memo.get(idx));
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings', at);
        stack.push(findGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(call(fn, args, at));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args, at));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args, at));
        break;
      }
      case 0x6f: {
        // OBJ
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class', at);
        stack.push(call(items[0], tuple(items.slice(1)), at));
        break;
      }
      case 0x69: {
        // INST
        const module = line();
        const name = line();
        stack.push(call(findGlobal(module, name), tuple(popMark()), at));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        else if (obj instanceof Map || (obj !== null && typeof obj === 'object' && 'buildState' in obj)) {
          // OrderedDict attributes (e.g. state_dict `_metadata`) and tensors' python attributes: not model data.
          if (obj !== null && typeof obj === 'object' && 'buildState' in obj) (obj as { buildState: unknown }).buildState = state;
        } else fail('BUILD on an unsupported object', at);
        break;
      }
      case 0x51: // BINPERSID
      case 0x50: {
        // PERSID
        const pid = op === 0x51 ? pop() : line();
        if (!options.persistentLoad) fail('persistent id found but no persistent loader given', at);
        stack.push(options.persistentLoad!(pid));
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84:
        fail('pickle extension codes are not supported', at);
        break;
      default:
        fail(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')}`, at);
    }
  }
}
