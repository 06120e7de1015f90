/**
 * A streaming zip writer for PyTorch archives: stored (uncompressed) entries whose data starts on a 64-byte boundary
 * (as torch's PyTorchStreamWriter pads with an extra field, so storages can be memory-mapped), CRC-32 per entry
 * (torch's reader checks it), and zip64 records once an entry, an offset or the directory passes 4 GiB.
 * Entries are written one at a time to an open file, so a multi-GB checkpoint is never one buffer in memory.
 */
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';

/** Alignment of each entry's data in the file (torch's kFieldAlignment). */
export const ZIP_ALIGNMENT = 64;
const FF32 = 0xffffffff;
/** Extra-field id torch uses for its alignment padding ('FB'). */
const PAD_FIELD = 0x4246;

let table: Uint32Array | undefined;
function crcTable(): Uint32Array {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  return table;
}

/** CRC-32 (zip / PNG polynomial) of `data`, continuing from `crc` (crc32("123456789") = 0xcbf43926). */
export function crc32(data: Uint8Array, crc = 0): number {
  const native = (zlib as unknown as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
  if (native) return native(data, crc) >>> 0;
  const t = crcTable();
  let c = (crc ^ FF32) >>> 0;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ FF32) >>> 0;
}

interface Written {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
}

export class ZipWriter {
  private offset = 0;
  private readonly entries: Written[] = [];
  private readonly names = new Set<string>();

  /** `forceZip64` writes zip64 records for every entry and the directory (tests the >4 GiB layout on small files). */
  constructor(
    private readonly fh: FileHandle,
    private readonly options: { forceZip64?: boolean } = {},
  ) {}

  /** Bytes written so far (the next entry's offset). */
  get size(): number {
    return this.offset;
  }

  private async write(b: Uint8Array): Promise<void> {
    let done = 0;
    while (done < b.length) {
      const { bytesWritten } = await this.fh.write(b, done, b.length - done, this.offset + done);
      done += bytesWritten;
    }
    this.offset += b.length;
  }

  /** Add one stored entry; `parts` are concatenated (e.g. a storage written in chunks). */
  async add(name: string, parts: Uint8Array | readonly Uint8Array[]): Promise<void> {
    if (this.names.has(name)) throw new Error(`zip entry ${name} written twice`);
    this.names.add(name);
    const chunks = parts instanceof Uint8Array ? [parts] : parts;
    let size = 0;
    let crc = 0;
    for (const c of chunks) {
      size += c.length;
      crc = crc32(c, crc);
    }
    const nameBuf = Buffer.from(name, 'utf8');
    const big = size >= FF32 || Boolean(this.options.forceZip64);
    const zip64Local = big ? 20 : 0;
    const before = this.offset + 30 + nameBuf.length + zip64Local + 4;
    const pad = (ZIP_ALIGNMENT - (before % ZIP_ALIGNMENT)) % ZIP_ALIGNMENT;
    const extra = Buffer.alloc(zip64Local + 4 + pad);
    if (big) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(16, 2);
      extra.writeBigUInt64LE(BigInt(size), 4);
      extra.writeBigUInt64LE(BigInt(size), 12);
    }
    extra.writeUInt16LE(PAD_FIELD, zip64Local);
    extra.writeUInt16LE(pad, zip64Local + 2);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(big ? 45 : 20, 4); // version needed
    h.writeUInt16LE(0, 6); // flags
    h.writeUInt16LE(0, 8); // stored
    h.writeUInt16LE(0, 10); // time
    h.writeUInt16LE(0x21, 12); // date 1980-01-01
    h.writeUInt32LE(crc, 14);
    h.writeUInt32LE(big ? FF32 : size, 18);
    h.writeUInt32LE(big ? FF32 : size, 22);
    h.writeUInt16LE(nameBuf.length, 26);
    h.writeUInt16LE(extra.length, 28);
    const offset = this.offset;
    await this.write(Buffer.concat([h, nameBuf, extra]));
    for (const c of chunks) await this.write(c);
    this.entries.push({ name: nameBuf, crc, size, offset });
  }

  /** Write the central directory (zip64 records when needed); the file handle stays open. Returns the file size. */
  async finish(): Promise<number> {
    const cdStart = this.offset;
    const parts: Buffer[] = [];
    for (const e of this.entries) {
      const z64 = e.size >= FF32 || e.offset >= FF32 || Boolean(this.options.forceZip64);
      const extra = Buffer.alloc(z64 ? 28 : 0);
      if (z64) {
        extra.writeUInt16LE(0x0001, 0);
        extra.writeUInt16LE(24, 2);
        extra.writeBigUInt64LE(BigInt(e.size), 4);
        extra.writeBigUInt64LE(BigInt(e.size), 12);
        extra.writeBigUInt64LE(BigInt(e.offset), 20);
      }
      const c = Buffer.alloc(46);
      c.writeUInt32LE(0x02014b50, 0);
      c.writeUInt16LE(z64 ? 45 : 20, 4); // made by
      c.writeUInt16LE(z64 ? 45 : 20, 6); // needed
      c.writeUInt16LE(0x21, 14); // date
      c.writeUInt32LE(e.crc, 16);
      c.writeUInt32LE(z64 ? FF32 : e.size, 20);
      c.writeUInt32LE(z64 ? FF32 : e.size, 24);
      c.writeUInt16LE(e.name.length, 28);
      c.writeUInt16LE(extra.length, 30);
      c.writeUInt32LE(z64 ? FF32 : e.offset, 42);
      parts.push(c, e.name, extra);
    }
    const cd = Buffer.concat(parts);
    await this.write(cd);
    const n = this.entries.length;
    const z64 = n >= 0xffff || cd.length >= FF32 || cdStart >= FF32 || Boolean(this.options.forceZip64);
    if (z64) {
      const recStart = this.offset;
      const z = Buffer.alloc(56);
      z.writeUInt32LE(0x06064b50, 0);
      z.writeBigUInt64LE(44n, 4);
      z.writeUInt16LE(45, 12);
      z.writeUInt16LE(45, 14);
      z.writeBigUInt64LE(BigInt(n), 24);
      z.writeBigUInt64LE(BigInt(n), 32);
      z.writeBigUInt64LE(BigInt(cd.length), 40);
      z.writeBigUInt64LE(BigInt(cdStart), 48);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeBigUInt64LE(BigInt(recStart), 8);
      loc.writeUInt32LE(1, 16);
      await this.write(Buffer.concat([z, loc]));
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(z64 ? 0xffff : n, 8);
    end.writeUInt16LE(z64 ? 0xffff : n, 10);
    end.writeUInt32LE(z64 ? FF32 : cd.length, 12);
    end.writeUInt32LE(z64 ? FF32 : cdStart, 16);
    await this.write(end);
    return this.offset;
  }
}
