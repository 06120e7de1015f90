/**
 * TensorBoard event files written without TensorFlow: a TFRecord stream of `Event` protobufs.
 *
 * TFRecord record: uint64 little-endian length, uint32 masked CRC32C of those 8 bytes, the data, uint32 masked CRC32C of
 * the data. Masked CRC: ((crc >>> 15) | (crc << 17)) + 0xa282ead8 (mod 2³²).
 * Event (tensorflow/core/util/event.proto): 1 wall_time double, 2 step int64, 3 file_version string, 5 summary Summary.
 * Summary: repeated 1 Value { 1 tag string, 2 simple_value float, 4 image Image { 1 height, 2 width, 3 colorspace int32,
 * 4 encoded_image_string bytes } }. The first record is the `brain.Event:2` file-version event, as TensorBoard expects.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { OnEvent, ProgressEvent } from '../util/events.js';

/** CRC32C (Castagnoli) reflected polynomial. */
const CRC32C_POLY = 0x82f63b78;
/** TFRecord's CRC mask constant. */
const CRC_MASK_DELTA = 0xa282ead8;
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC32C of `data` (the iSCSI / Castagnoli CRC: crc32c("123456789") = 0xe3069283). */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC32C. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return (((c >>> 15) | (c << 17)) + CRC_MASK_DELTA) >>> 0;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(data.length), 0);
  head.writeUInt32LE(maskedCrc32c(head.subarray(0, 8)), 8);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([head, data, tail]);
}

// --- a minimal protobuf encoder (only the wire types the Event subset needs) ---
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

function varint(v: bigint | number): Buffer {
  let x = BigInt.asUintN(64, BigInt(v));
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
const fBytes = (field: number, data: Uint8Array) => Buffer.concat([key(field, WIRE_BYTES), varint(data.length), data]);
const fString = (field: number, s: string) => fBytes(field, Buffer.from(s, 'utf8'));
const fVarint = (field: number, v: number | bigint) => Buffer.concat([key(field, WIRE_VARINT), varint(v)]);
function fDouble(field: number, v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return Buffer.concat([key(field, WIRE_FIXED64), b]);
}
function fFloat(field: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return Buffer.concat([key(field, WIRE_FIXED32), b]);
}

export type SummaryValue = { tag: string; scalar: number } | { tag: string; image: { png: Uint8Array; width: number; height: number; channels: number } };

/** An Event protobuf: wall time (s), step and either the file version or a Summary. */
export function encodeEvent(e: { wallTime: number; step: number; fileVersion?: string; values?: readonly SummaryValue[] }): Buffer {
  const parts = [fDouble(1, e.wallTime), fVarint(2, BigInt(Math.trunc(e.step)))];
  if (e.fileVersion !== undefined) parts.push(fString(3, e.fileVersion));
  if (e.values?.length) {
    const values = e.values.map((v) => {
      const body =
        'scalar' in v
          ? Buffer.concat([fString(1, v.tag), fFloat(2, v.scalar)])
          : Buffer.concat([
              fString(1, v.tag),
              fBytes(4, Buffer.concat([fVarint(1, v.image.height), fVarint(2, v.image.width), fVarint(3, v.image.channels), fBytes(4, v.image.png)])),
            ]);
      return fBytes(1, body);
    });
    parts.push(fBytes(5, Buffer.concat(values)));
  }
  return Buffer.concat(parts);
}

/** PNG width/height from the IHDR chunk (bytes 16–23); a non-PNG fails. */
function pngSize(png: Uint8Array): { width: number; height: number } {
  const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47];
  const IHDR_END = 24;
  if (png.length < IHDR_END || PNG_MAGIC.some((b, i) => png[i] !== b)) throw new Error('tensorboard: image event is not a PNG');
  const b = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

/**
 * Appends events to `<dir>/events.out.tfevents.<unix seconds>.<host>`. Each record is written with one write call, so a
 * run killed mid-way leaves whole records (TensorBoard ignores a truncated last record).
 */
export class TensorBoardWriter {
  readonly file: string;
  private fd: number | undefined;

  constructor(dir: string, now = Date.now()) {
    mkdirSync(dir, { recursive: true });
    const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'localhost';
    this.file = path.join(dir, `events.out.tfevents.${Math.floor(now / 1000)}.${host}.${process.pid}`);
    this.fd = openSync(this.file, 'wx');
    this.write(encodeEvent({ wallTime: now / 1000, step: 0, fileVersion: 'brain.Event:2' }));
  }

  private write(event: Buffer): void {
    if (this.fd === undefined) throw new Error('tensorboard: writer is closed');
    writeSync(this.fd, tfRecord(event));
  }

  scalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    this.write(encodeEvent({ wallTime, step, values: [{ tag, scalar: value }] }));
  }

  image(tag: string, png: Uint8Array, step: number, wallTime = Date.now() / 1000): void {
    const { width, height } = pngSize(png);
    const RGB = 3;
    this.write(encodeEvent({ wallTime, step, values: [{ tag, image: { png, width, height, channels: RGB } }] }));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * An event sink that records `metric` events with a step as scalars and `image` events as images, then passes every
 * event on to `next`. The event file is created at the first recorded event (a run refused before its first step
 * leaves nothing behind). Call `close()` when the run ends.
 */
export function tensorBoardSink(dir: string, next: OnEvent): { onEvent: OnEvent; file: () => string | undefined; close: () => void } {
  let writer: TensorBoardWriter | undefined;
  const open = () => (writer ??= new TensorBoardWriter(dir));
  const onEvent = (e: ProgressEvent) => {
    if (e.type === 'metric' && e.step !== undefined && Number.isFinite(e.value)) open().scalar(e.name, e.value, e.step);
    else if (e.type === 'image') open().image(e.name, e.png, e.step);
    next(e);
  };
  return { onEvent, file: () => writer?.file, close: () => writer?.close() };
}
