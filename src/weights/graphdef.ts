/**
 * A bounded reader of TensorFlow frozen graphs (`GraphDef`, protobuf wire format) — enough of
 * tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto to take the weights out of a frozen
 * model such as DeepSpeech 0.1.0's `output_graph.pb`: every node's name, op and inputs, its `dtype` attribute and, for
 * Const nodes, the `value` TensorProto (dtype, tensor_shape, and the values from tensor_content or float_val/int_val).
 *
 * Bounds: every length-delimited field is checked against the bytes that remain in its parent; varints are at most
 * 10 bytes and 64-bit values above 2^53 are refused; a tensor's declared element count must fit the bytes that carry it
 * (tensor_content exactly count × element size; a repeated value list either count values or one value that TensorFlow
 * repeats, and then no more elements than the file has bytes); group wire types and unknown dtypes of stored values
 * are refused. Everything malformed is one DifftalkError('bad-graphdef') naming the file and the field.
 */
import { readFile, stat } from 'node:fs/promises';
import { DifftalkError } from '../util/errors.js';

/** tensorflow/core/framework/types.proto DataType values this reader decodes. */
export const TF_DTYPES = { float32: 1, float64: 2, int32: 3, int64: 9 } as const;
const DTYPE_NAMES: Record<number, keyof typeof TF_DTYPES> = { 1: 'float32', 2: 'float64', 3: 'int32', 9: 'int64' };
const ELEMENT_BYTES: Record<keyof typeof TF_DTYPES, number> = { float32: 4, float64: 8, int32: 4, int64: 8 };

export interface GraphTensor {
  /** The TensorProto's DataType number (1 float, 2 double, 3 int32, 9 int64 …). */
  dtypeCode: number;
  dtype: keyof typeof TF_DTYPES | 'other';
  shape: number[];
  /** Values (float32/float64 → Float32Array/Float64Array; int32/int64 → Int32Array/Float64Array); undefined for other dtypes. */
  data?: Float32Array | Float64Array | Int32Array;
}

export interface GraphNode {
  name: string;
  op: string;
  inputs: string[];
  /** The `dtype` or `T` attribute (DataType number), when present. */
  dtype?: number;
  /** The `value` attribute of a Const node. */
  tensor?: GraphTensor;
}

export interface GraphDef {
  nodes: GraphNode[];
  /** Nodes by name (a duplicate name is an error). */
  byName: Map<string, GraphNode>;
}

/** Largest file read (a frozen DeepSpeech 0.1.0 graph is a few hundred MB). */
export const GRAPHDEF_MAX_BYTES = 2 * 1024 ** 3;
const MAX_NODES_PER_BYTE = 1 / 4; // a NodeDef with a name and an op takes at least 4 bytes
const MAX_DIMS = 32;

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
    readonly fail: (msg: string) => never,
  ) {
    this.pos = start;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(what: string): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`truncated varint in ${what}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) this.fail(`${what}: value ${result} is larger than 2^53`);
        return result;
      }
      mul *= 128;
    }
    return this.fail(`varint longer than 10 bytes in ${what}`);
  }

  /** A signed int64 varint (two's complement over 64 bits), as a safe integer. */
  int64(what: string): number {
    const start = this.pos;
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`truncated varint in ${what}`);
      const b = this.buf[this.pos++]!;
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (b < 0x80) {
        const s = BigInt.asIntN(64, v);
        if (s > BigInt(Number.MAX_SAFE_INTEGER) || s < BigInt(Number.MIN_SAFE_INTEGER)) this.fail(`${what}: value ${s} is outside ±2^53`);
        return Number(s);
      }
    }
    this.pos = start;
    return this.fail(`varint longer than 10 bytes in ${what}`);
  }

  /** [start, end) of a length-delimited field, checked against the parent's end. */
  bytes(what: string): [number, number] {
    const len = this.varint(`${what} length`);
    if (len > this.end - this.pos) this.fail(`${what} declares ${len} bytes but only ${this.end - this.pos} remain`);
    const s = this.pos;
    this.pos += len;
    return [s, s + len];
  }

  skip(wire: number, what: string): void {
    switch (wire) {
      case 0:
        this.varint(what);
        return;
      case 1:
        if (this.end - this.pos < 8) this.fail(`truncated fixed64 in ${what}`);
        this.pos += 8;
        return;
      case 2:
        this.bytes(what);
        return;
      case 5:
        if (this.end - this.pos < 4) this.fail(`truncated fixed32 in ${what}`);
        this.pos += 4;
        return;
      default:
        this.fail(`unsupported wire type ${wire} in ${what}`);
    }
  }

  /** Next field key: [field number, wire type]. */
  key(what: string): [number, number] {
    const k = this.varint(`${what} field key`);
    const field = Math.floor(k / 8);
    if (field === 0) this.fail(`field number 0 in ${what}`);
    return [field, k & 7];
  }

  sub(range: [number, number]): Reader {
    return new Reader(this.buf, range[0], range[1], this.fail);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: false });
const text = (r: Reader, range: [number, number]): string => decoder.decode(r.buf.subarray(range[0], range[1]));

function readShape(r: Reader): number[] {
  const dims: number[] = [];
  while (!r.done()) {
    const [f, w] = r.key('TensorShapeProto');
    if (f === 2 && w === 2) {
      const d = r.sub(r.bytes('TensorShapeProto.dim'));
      let size = 0;
      while (!d.done()) {
        const [df, dw] = d.key('TensorShapeProto.Dim');
        if (df === 1 && dw === 0) size = d.int64('Dim.size');
        else d.skip(dw, 'TensorShapeProto.Dim');
      }
      if (dims.length >= MAX_DIMS) r.fail(`tensor shape has more than ${MAX_DIMS} dimensions`);
      dims.push(size);
    } else if (f === 3 && w === 0) {
      if (r.varint('unknown_rank')) r.fail('a stored tensor has unknown rank');
    } else r.skip(w, 'TensorShapeProto');
  }
  return dims;
}

/** Values of a repeated numeric field, packed (wire 2) or not (wire 0/5/1), appended to `out`. */
function readRepeated(r: Reader, wire: number, kind: 'f32' | 'f64' | 'varint', out: number[], limit: number, what: string): void {
  const view = new DataView(r.buf.buffer, r.buf.byteOffset, r.buf.byteLength);
  const one = (rr: Reader): void => {
    if (out.length >= limit) rr.fail(`${what} holds more values than the tensor has elements`);
    if (kind === 'f32') {
      if (rr.end - rr.pos < 4) rr.fail(`truncated ${what}`);
      out.push(view.getFloat32(rr.pos, true));
      rr.pos += 4;
    } else if (kind === 'f64') {
      if (rr.end - rr.pos < 8) rr.fail(`truncated ${what}`);
      out.push(view.getFloat64(rr.pos, true));
      rr.pos += 8;
    } else out.push(rr.int64(what));
  };
  const want = kind === 'f32' ? 5 : kind === 'f64' ? 1 : 0;
  if (wire === 2) {
    const p = r.sub(r.bytes(what));
    while (!p.done()) one(p);
  } else if (wire === want) one(r);
  else r.fail(`${what} has wire type ${wire}`);
}

/** Elements all tensors of one graph may still allocate: at most one per byte of the file (a repeated single value
 * that TensorFlow broadcasts cannot make a small file allocate gigabytes). */
interface Budget {
  elements: number;
}

function readTensor(r: Reader, fileBytes: number, node: string, budget: Budget): GraphTensor {
  let dtypeCode = 0;
  let shape: number[] = [];
  let content: [number, number] | undefined;
  const values: number[] = [];
  const what = `TensorProto of node '${node}'`;
  // Value lists can hold at most one value per byte of their field; the element count check comes after the shape.
  const listLimit = r.end - r.pos;
  while (!r.done()) {
    const [f, w] = r.key(what);
    if (f === 1 && w === 0) dtypeCode = r.varint(`${what} dtype`);
    else if (f === 2 && w === 2) shape = readShape(r.sub(r.bytes(`${what} tensor_shape`)));
    else if (f === 4 && w === 2) content = r.bytes(`${what} tensor_content`);
    else if (f === 5) readRepeated(r, w, 'f32', values, listLimit, `${what} float_val`);
    else if (f === 6) readRepeated(r, w, 'f64', values, listLimit, `${what} double_val`);
    else if (f === 7 || f === 10) readRepeated(r, w, 'varint', values, listLimit, `${what} ${f === 7 ? 'int_val' : 'int64_val'}`);
    else r.skip(w, what);
  }
  let count = 1;
  for (const d of shape) {
    if (d < 0) r.fail(`${what} has a negative dimension ${d} in [${shape}]`);
    count *= d;
    if (count > fileBytes) r.fail(`${what} declares shape [${shape}]: more elements than the file has bytes (${fileBytes})`);
  }
  const dtype = DTYPE_NAMES[dtypeCode] ?? 'other';
  if (dtype === 'other') return { dtypeCode, dtype, shape };
  budget.elements -= count;
  if (budget.elements < 0) r.fail(`${what} (shape [${shape}]) takes the graph's tensors past one element per byte of the file`);
  const size = ELEMENT_BYTES[dtype];
  let data: Float32Array | Float64Array | Int32Array;
  const make = (n: number) => (dtype === 'float32' ? new Float32Array(n) : dtype === 'int32' ? new Int32Array(n) : new Float64Array(n));
  if (content) {
    const len = content[1] - content[0];
    if (len !== count * size) r.fail(`${what}: tensor_content has ${len} bytes, shape [${shape}] of ${dtype} needs ${count * size}`);
    data = make(count);
    const view = new DataView(r.buf.buffer, r.buf.byteOffset + content[0], len);
    for (let i = 0; i < count; i++) {
      if (dtype === 'float32') data[i] = view.getFloat32(i * 4, true);
      else if (dtype === 'float64') data[i] = view.getFloat64(i * 8, true);
      else if (dtype === 'int32') data[i] = view.getInt32(i * 4, true);
      else data[i] = Number(view.getBigInt64(i * 8, true));
    }
  } else {
    if (values.length !== count && !(values.length === 1 && count > 0) && !(values.length === 0 && count === 0)) {
      if (values.length === 0) r.fail(`${what}: shape [${shape}] has ${count} elements but the tensor stores no values`);
      r.fail(`${what}: ${values.length} values for shape [${shape}] (${count} elements)`);
    }
    data = make(count);
    if (values.length === 1) data.fill(values[0]!);
    else data.set(values);
  }
  return { dtypeCode, dtype, shape, data };
}

function readAttrValue(r: Reader, fileBytes: number, node: string, budget: Budget): { type?: number; tensor?: GraphTensor } {
  const out: { type?: number; tensor?: GraphTensor } = {};
  while (!r.done()) {
    const [f, w] = r.key(`attr of node '${node}'`);
    if (f === 6 && w === 0) out.type = r.varint('AttrValue.type');
    else if (f === 8 && w === 2) out.tensor = readTensor(r.sub(r.bytes('AttrValue.tensor')), fileBytes, node, budget);
    else r.skip(w, `attr of node '${node}'`);
  }
  return out;
}

function readNode(r: Reader, fileBytes: number, budget: Budget): GraphNode {
  const node: GraphNode = { name: '', op: '', inputs: [] };
  while (!r.done()) {
    const [f, w] = r.key('NodeDef');
    if (f === 1 && w === 2) node.name = text(r, r.bytes('NodeDef.name'));
    else if (f === 2 && w === 2) node.op = text(r, r.bytes('NodeDef.op'));
    else if (f === 3 && w === 2) node.inputs.push(text(r, r.bytes('NodeDef.input')));
    else if (f === 5 && w === 2) {
      const e = r.sub(r.bytes('NodeDef.attr'));
      let key = '';
      let value: [number, number] | undefined;
      while (!e.done()) {
        const [ef, ew] = e.key('NodeDef.attr entry');
        if (ef === 1 && ew === 2) key = text(e, e.bytes('attr key'));
        else if (ef === 2 && ew === 2) value = e.bytes('attr value');
        else e.skip(ew, 'NodeDef.attr entry');
      }
      if (!value) continue;
      if (key === 'value' || key === 'dtype' || key === 'T') {
        const a = readAttrValue(r.sub(value), fileBytes, node.name || '?', budget);
        if (key === 'value' && a.tensor) node.tensor = a.tensor;
        if (key !== 'value' && a.type !== undefined) node.dtype = a.type;
      }
    } else r.skip(w, 'NodeDef');
  }
  if (!node.name) r.fail('a NodeDef has no name');
  return node;
}

/** Parse GraphDef bytes. `source` names the file in errors. */
export function parseGraphDef(bytes: Uint8Array, source = 'graph'): GraphDef {
  const fail = (msg: string): never => {
    throw new DifftalkError('bad-graphdef', `${source}: not a valid TensorFlow GraphDef (${msg})`, {
      suggestion: 'pass the frozen graph file itself (e.g. DeepSpeech 0.1.0 output_graph.pb), complete and unmodified',
    });
  };
  const r = new Reader(bytes, 0, bytes.length, fail);
  const nodes: GraphNode[] = [];
  const byName = new Map<string, GraphNode>();
  const maxNodes = Math.max(1, Math.floor(bytes.length * MAX_NODES_PER_BYTE));
  const budget: Budget = { elements: bytes.length };
  while (!r.done()) {
    const [f, w] = r.key('GraphDef');
    if (f === 1 && w === 2) {
      if (nodes.length >= maxNodes) fail('more nodes than the file can hold');
      const node = readNode(r.sub(r.bytes('GraphDef.node')), bytes.length, budget);
      if (byName.has(node.name)) fail(`two nodes are named '${node.name}'`);
      nodes.push(node);
      byName.set(node.name, node);
    } else r.skip(w, 'GraphDef');
  }
  if (nodes.length === 0) fail('it has no nodes');
  return { nodes, byName };
}

/** Read and parse a GraphDef file (at most GRAPHDEF_MAX_BYTES). */
export async function readGraphDef(file: string): Promise<GraphDef> {
  let size: number;
  try {
    const s = await stat(file);
    if (!s.isFile()) throw new Error('not a file');
    size = s.size;
  } catch {
    throw new DifftalkError('not-found', `${file}: no such file`);
  }
  if (size > GRAPHDEF_MAX_BYTES)
    throw new DifftalkError('bad-graphdef', `${file} is ${size} bytes, more than the ${GRAPHDEF_MAX_BYTES} a frozen graph may have`);
  return parseGraphDef(new Uint8Array(await readFile(file)), file);
}
