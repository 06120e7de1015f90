import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DifftalkError } from '../../src/util/errors.js';
import { PyGlobal, PyObject, unpickle } from '../../src/weights/pickle.js';

// Reference: CPython 3 `pickle.dumps(obj, protocol=p)` of the object below (bytes generated once with python3,
// pasted here; no Python at test time):
//   {'i1': 7, 'i2': 1234, 'i4': -70000, 'big': 2**70, 'neg': -2**40, 'f': 1.5e-3, 's': 'héllo', 'b': b'\x00\xff',
//    't': (1, (2, 3), ()), 'l': [None, True, False], 'set': {4}, 'fs': frozenset([5]),
//    'od': OrderedDict([('a', 1), ('b', [1, 2])]), 'ba': bytearray(b'xy'), 'shared': (shared, shared)}
const PICKLES: Record<number, string> = {
  0: '286470300a5669310a70310a49370a735669320a70320a49313233340a735669340a70330a492d37303030300a73566269670a70340a4c313138303539313632303731373431313330333432344c0a73566e65670a70350a4c2d313039393531313632373737364c0a7356660a70360a46302e303031350a7356730a70370a5668e96c6c6f0a70380a7356620a70390a635f636f646563730a656e636f64650a7031300a28565c7530303030ff0a7031310a566c6174696e310a7031320a747031330a527031340a7356740a7031350a2849310a2849320a49330a747031360a2874747031370a73566c0a7031380a286c7031390a4e614930310a614930300a6173567365740a7032300a635f5f6275696c74696e5f5f0a7365740a7032310a28286c7032320a49340a61747032330a527032340a735666730a7032350a635f5f6275696c74696e5f5f0a66726f7a656e7365740a7032360a28286c7032370a49350a61747032380a527032390a73566f640a7033300a63636f6c6c656374696f6e730a4f726465726564446963740a7033310a2874527033320a56610a7033330a49310a7367390a286c7033340a49310a6149320a6173735662610a7033350a635f5f6275696c74696e5f5f0a6279746561727261790a7033360a286731300a285678790a7033370a6731320a747033380a527033390a747034300a527034310a73567368617265640a7034320a28286c7034330a49310a6149320a616734330a747034340a732e',
  2: '80027d7100285802000000693171014b075802000000693271024dd2045802000000693471034a90eefeff580300000062696771048a0900000000000000004058030000006e656771058a060000000000ff5801000000667106473f589374bc6a7efa5801000000737107580600000068c3a96c6c6f71085801000000627109635f636f646563730a656e636f64650a710a580300000000c3bf710b58060000006c6174696e31710c86710d52710e580100000074710f4b014b024b038671102987711158010000006c71125d7113284e88896558030000007365747114635f5f6275696c74696e5f5f0a7365740a71155d71164b0461857117527118580200000066737119635f5f6275696c74696e5f5f0a66726f7a656e7365740a711a5d711b4b056185711c52711d58020000006f64711e63636f6c6c656374696f6e730a4f726465726564446963740a711f295271202858010000006171214b0168095d7122284b014b026575580200000062617123635f5f6275696c74696e5f5f0a6279746561727261790a7124680a580200000078797125680c8671265271278571285271295806000000736861726564712a5d712b284b014b0265682b86712c752e',
  4: '80049504010000000000007d94288c026931944b078c026932944dd2048c026934944a90eefeff8c03626967948a090000000000000000408c036e6567948a060000000000ff8c016694473f589374bc6a7efa8c0173948c0668c3a96c6c6f948c016294430200ff948c0174944b014b024b0386942987948c016c945d94284e8889658c03736574948f94284b04908c02667394284b0591948c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b0168095d94284b014b0265758c026261948c086275696c74696e73948c096279746561727261799493944302787994859452948c06736861726564945d94284b014b026568238694752e',
  5: '800595ee000000000000007d94288c026931944b078c026932944dd2048c026934944a90eefeff8c03626967948a090000000000000000408c036e6567948a060000000000ff8c016694473f589374bc6a7efa8c0173948c0668c3a96c6c6f948c016294430200ff948c0174944b014b024b0386942987948c016c945d94284e8889658c03736574948f94284b04908c02667394284b0591948c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b0168095d94284b014b0265758c026261949602000000000000007879948c06736861726564945d94284b014b0265681e8694752e',
};

for (const [protocol, hex] of Object.entries(PICKLES)) {
  test(`protocol ${protocol} pickle decodes to the same values as CPython (exact)`, () => {
    const buf = Buffer.from(hex, 'hex');
    const { value, end } = unpickle(buf);
    assert.equal(end, buf.length);
    const m = value as Map<string, unknown>;
    assert.ok(m instanceof Map);
    assert.equal(m.get('i1'), 7);
    assert.equal(m.get('i2'), 1234);
    assert.equal(m.get('i4'), -70000);
    assert.equal(m.get('big'), 2n ** 70n);
    assert.equal(m.get('neg'), -(2 ** 40));
    assert.equal(m.get('f'), 1.5e-3);
    assert.equal(m.get('s'), 'héllo');
    assert.deepEqual([...(m.get('b') as Uint8Array)], [0, 255]);
    assert.deepEqual(m.get('t'), [1, [2, 3], []]);
    assert.deepEqual(m.get('l'), [null, true, false]);
    assert.deepEqual(m.get('set'), new Set([4]));
    assert.deepEqual(m.get('fs'), new Set([5]));
    assert.deepEqual(
      m.get('od'),
      new Map<string, unknown>([
        ['a', 1],
        ['b', [1, 2]],
      ]),
    );
    assert.deepEqual([...(m.get('ba') as Uint8Array)], [0x78, 0x79]);
    const shared = m.get('shared') as unknown[][];
    assert.equal(shared[0], shared[1]); // memo keeps identity
  });
}

test('unknown globals are never called: they become inert PyObjects', () => {
  // pickle.dumps(os.system('x')) cannot be expressed; this is GLOBAL 'os system', ('echo',), REDUCE, STOP
  const buf = Buffer.concat([Buffer.from('\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.', 'latin1')]);
  const v = unpickle(buf).value;
  assert.ok(v instanceof PyObject);
  assert.ok(v.cls instanceof PyGlobal && v.cls.qualifiedName === 'os.system');
  assert.deepEqual(v.args, ['echo']);
});

test('corrupt pickles raise DifftalkError(bad-pickle)', () => {
  const bad = (e: unknown) => e instanceof DifftalkError && e.code === 'bad-pickle';
  const good = Buffer.from(PICKLES[2]!, 'hex');
  assert.throws(() => unpickle(good.subarray(0, 40)), bad);
  assert.throws(() => unpickle(Buffer.from([0x80, 0x02, 0xff, 0x2e])), bad); // unknown opcode
  assert.throws(() => unpickle(Buffer.from([0x80, 0x02, 0x52, 0x2e])), bad); // REDUCE on empty stack
  assert.throws(() => unpickle(Buffer.from([0x80, 0x02, 0x68, 0x05, 0x2e])), bad); // missing memo
  assert.throws(() => unpickle(Buffer.from([0x80, 0x06, 0x4e, 0x2e])), bad); // protocol 6
  assert.throws(() => unpickle(Buffer.from([0x80, 0x02, 0x4e, 0x4e, 0x2e])), bad); // two values at STOP
});
