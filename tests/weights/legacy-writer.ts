/**
 * Test helper: write a flat float32 state dict in PyTorch's legacy (non-zip) format, byte layout as torch 2.x
 * `torch.save(sd, f, _use_new_zipfile_serialization=False)` (see torch_legacy.pt). Used to fabricate torchvision-named
 * checkpoints (the real torchvision files are not available on these machines).
 */
import { writeFileSync } from 'node:fs';

class Pickler {
  private readonly parts: Buffer[] = [];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b); // BINUNICODE
    return this;
  }
  int(v: number): this {
    const b = Buffer.alloc(5);
    b[0] = 0x4a; // BININT
    b.writeInt32LE(v, 1);
    this.parts.push(b);
    return this;
  }
  global(module: string, name: string): this {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
    return this;
  }
  tuple(items: number[]): this {
    this.op(0x28);
    for (const v of items) this.int(v);
    return this.op(0x74);
  }
  bytes(): Buffer {
    return Buffer.concat([...this.parts, Buffer.from([0x2e])]); // STOP
  }
}

export function writeLegacyTorch(file: string, tensors: Map<string, { shape: readonly number[]; data: Float32Array }>): void {
  const magic = new Pickler().op(0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).bytes();
  const proto = new Pickler().op(0x80, 2, 0x4d, 0xe9, 0x03).bytes();
  const sys = new Pickler()
    .op(0x80, 2, 0x7d, 0x28)
    .str('protocol_version')
    .int(1001)
    .str('little_endian')
    .op(0x88)
    .str('type_sizes')
    .op(0x7d, 0x28)
    .str('short')
    .int(2)
    .str('int')
    .int(4)
    .str('long')
    .int(4)
    .op(0x75, 0x75)
    .bytes();
  const obj = new Pickler().op(0x80, 2).global('collections', 'OrderedDict').op(0x29, 0x52);
  const keys: string[] = [];
  const storages: Buffer[] = [];
  for (const [name, t] of tensors) {
    const key = String(keys.length);
    keys.push(key);
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    obj.str(name).global('torch._utils', '_rebuild_tensor_v2').op(0x28); // MARK (args)
    obj.op(0x28).str('storage').global('torch', 'FloatStorage').str(key).str('cpu').int(t.data.length).op(0x4e, 0x74, 0x51); // (…, None) TUPLE BINPERSID
    obj
      .int(0)
      .tuple([...t.shape])
      .tuple(stride)
      .op(0x89)
      .global('collections', 'OrderedDict')
      .op(0x29, 0x52, 0x74, 0x52, 0x73); // … TUPLE REDUCE SETITEM
    const count = Buffer.alloc(8);
    count.writeBigInt64LE(BigInt(t.data.length));
    storages.push(count, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const list = new Pickler().op(0x80, 2, 0x5d, 0x28);
  for (const k of keys) list.str(k);
  list.op(0x65);
  writeFileSync(file, Buffer.concat([magic, proto, sys, obj.bytes(), list.bytes(), ...storages]));
}
