#!/usr/bin/env python3
"""Independent reader of TensorBoard event files for tests/train/tensorboard.test.ts.

    /usr/bin/python3 tests/reference/tfevents_reader.py FILE   # prints JSON to stdout

Record layout (TFRecord, as tensorflow/core/lib/io/record_writer.cc writes it): uint64 LE length, uint32 LE masked
CRC32C of the 8 length bytes, data, uint32 LE masked CRC32C of the data. CRC32C is computed here bit by bit from its
definition (reflected Castagnoli polynomial 0x82F63B78, init and final xor 0xFFFFFFFF), independently of the TypeScript
table code; mask = ((crc >> 15) | (crc << 17)) + 0xa282ead8 mod 2^32.
The Event / Summary schema subset (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto) is built
as a descriptor here and parsed with google.protobuf (Debian's python3-protobuf), so no TypeScript decoder is involved.
"""
import json
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def build_classes():
    fdp = descriptor_pb2.FileDescriptorProto(name='tb_subset.proto', package='tbsubset', syntax='proto3')

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = '.tbsubset.' + tname

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg('Image', [('height', 1, F.TYPE_INT32, opt, None), ('width', 2, F.TYPE_INT32, opt, None),
                  ('colorspace', 3, F.TYPE_INT32, opt, None), ('encoded_image_string', 4, F.TYPE_BYTES, opt, None)])
    msg('Value', [('tag', 1, F.TYPE_STRING, opt, None), ('simple_value', 2, F.TYPE_FLOAT, opt, None),
                  ('image', 4, F.TYPE_MESSAGE, opt, 'Image')])
    msg('Summary', [('value', 1, F.TYPE_MESSAGE, rep, 'Value')])
    msg('Event', [('wall_time', 1, F.TYPE_DOUBLE, opt, None), ('step', 2, F.TYPE_INT64, opt, None),
                  ('file_version', 3, F.TYPE_STRING, opt, None), ('summary', 5, F.TYPE_MESSAGE, opt, 'Summary')])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName('tbsubset.Event'))


def main(path):
    Event = build_classes()
    data = open(path, 'rb').read()
    pos, events, bad_crc = 0, [], 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise SystemExit('truncated header at %d' % pos)
        (length,) = struct.unpack_from('<Q', data, pos)
        (len_crc,) = struct.unpack_from('<I', data, pos + 8)
        if masked(data[pos:pos + 8]) != len_crc:
            bad_crc += 1
        body = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack_from('<I', data, pos + 12 + length)
        if masked(body) != data_crc:
            bad_crc += 1
        pos += 12 + length + 4
        ev = Event()
        ev.ParseFromString(body)
        out = {'wall_time': ev.wall_time, 'step': ev.step}
        if ev.file_version:
            out['file_version'] = ev.file_version
        vals = []
        for v in ev.summary.value:
            if v.HasField('image'):
                img = v.image.encoded_image_string
                w, h = struct.unpack('>II', img[16:24])
                vals.append({'tag': v.tag, 'image': {'height': v.image.height, 'width': v.image.width,
                             'colorspace': v.image.colorspace, 'bytes': len(img), 'png_magic': img[:4] == b'\x89PNG',
                             'ihdr_width': w, 'ihdr_height': h}})
            else:
                vals.append({'tag': v.tag, 'simple_value': v.simple_value})
        out['values'] = vals
        events.append(out)
    print(json.dumps({'records': len(events), 'bad_crc': bad_crc, 'events': events,
                      'crc_check_123456789': '%08x' % crc32c(b'123456789')}))


if __name__ == '__main__':
    main(sys.argv[1])
