/**
 * A minimal protobuf wire-format encoder (the writing counterpart of the bounded reader in ./graphdef.ts): varint and
 * length-delimited fields, fixed32 floats, nested messages. Repeated scalars are written unpacked (one tag per value),
 * which every proto2 and proto3 parser accepts. Used by src/models/onnx-emit.ts to build ONNX ModelProto bytes in
 * memory.
 */

const textEncoder = new TextEncoder();

/** One message under construction: append fields in field-number order, then `bytes()`. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  private scratch = new Uint8Array(16);

  private push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    let n = 0;
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) byte |= 0x80;
      this.scratch[n++] = byte;
    } while (v > 0n);
    this.push(this.scratch.slice(0, n));
  }

  private tag(field: number, wire: 0 | 1 | 2 | 5): void {
    this.varint(field * 8 + wire);
  }

  /** int32/int64/enum/bool field (negative numbers as 10-byte two's complement, as protobuf does). */
  int(field: number, value: number | boolean): this {
    if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError(`protobuf: field ${field}: ${value} is not an integer`);
    this.tag(field, 0);
    this.varint(typeof value === 'boolean' ? (value ? 1 : 0) : value);
    return this;
  }

  /** Repeated integer field, unpacked. */
  ints(field: number, values: readonly number[]): this {
    for (const v of values) this.int(field, v);
    return this;
  }

  /** float field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  /** Repeated float field, unpacked. */
  floats(field: number, values: readonly number[]): this {
    for (const v of values) this.float(field, v);
    return this;
  }

  /** bytes field (copied by reference: do not mutate `value` before `bytes()`). */
  bytesField(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytesField(field, textEncoder.encode(value));
  }

  /** Embedded message field. */
  message(field: number, m: ProtoWriter): this {
    return this.bytesField(field, m.bytes());
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
