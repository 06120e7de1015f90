/**
 * docs/data-format.md "Reading the shards in Python": every ```python block of that section runs as written (cwd = a
 * folder holding a dataset as `data/`, written by the project's shard writer over real frames of the HDTF sample clip),
 * followed by a few lines that print what the snippet read; the values must equal what was written (exactly: the same
 * float32 values, the same JPEG bytes; PIL's decode of them within 1 grey level of sharp's).
 * Needs a Python with pyarrow (and polars, torch for those blocks): DIFFTALK_PYARROW_PYTHON, /usr/bin/python3 or python3.
 * Debian 12 packages no pyarrow, so on a stock machine these tests are skipped with that reason.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { buildDatasetManifest, writeDatasetManifest } from '../../src/dataset/manifest.js';
import { difftalkReferenceSampler } from '../../src/dataset/reference.js';
import { encodeFrames, maskRowsFromLandmarks68, writeClipShards, type ShardMetadata } from '../../src/dataset/shard-writer.js';
import { runProcess, runTool } from '../../src/util/exec.js';
import { AOC_CLIP, ROOT, tmpDir } from '../helpers.js';

const CLIP = 'WDA_AlexandriaOcasioCortez_000';
const SIZE = 64;
const N = 70; // two record batches (64 + 6 rows)
const MFCC = { window: 20, dim: 13 };

/** Python interpreters tried, in order, and the first that imports `modules`. */
async function findPython(modules: string[]): Promise<{ python?: string; tried: string[] }> {
  const tried = [process.env.DIFFTALK_PYARROW_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => Boolean(p));
  for (const p of tried) {
    try {
      await runProcess(p, ['-c', `import ${modules.join(', ')}`]);
      return { python: p, tried };
    } catch {
      // not importable there
    }
  }
  return { tried };
}

const skipReason = (modules: string[], tried: string[]) =>
  `${modules.join(' and ')} not importable by ${tried.join(', ')} (Debian 12 has no python3-pyarrow package): pip install pyarrow polars, ` +
  'or set DIFFTALK_PYARROW_PYTHON to a Python that has them';

/** The ```python blocks of the "Reading the shards in Python" section. */
function snippets(): string[] {
  const doc = readFileSync(path.join(ROOT, 'docs/data-format.md'), 'utf8');
  const start = doc.indexOf('## Reading the shards in Python');
  assert.ok(start >= 0);
  const end = doc.indexOf('\n## ', start + 3);
  const section = doc.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const lm68Of = (f: number, p: number, xy: number) => Math.fround(10 + ((f * 7 + p * 3 + xy * 11) % 40) + 0.25);
const mfccOf = (f: number, j: number) => Math.fround(Math.cos(f * 0.5 + j * 0.03));

describe('docs/data-format.md: reading the shards in Python', () => {
  let work: string;
  let images: Uint8Array[];
  let blocks: string[];

  before(async () => {
    blocks = snippets();
    assert.equal(blocks.length, 4, 'pyarrow, pyarrow.dataset, polars, PyTorch');
    work = tmpDir('difftalk-pyreaders-');
    const data = path.join(work, 'data');
    const { stdout } = await runTool('ffmpeg', [
      '-v',
      'error',
      '-nostdin',
      '-i',
      AOC_CLIP,
      '-frames:v',
      String(N),
      '-vf',
      `scale=${SIZE}:${SIZE}:flags=area`,
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      'pipe:1',
    ]);
    images = await encodeFrames({ width: SIZE, height: SIZE, count: N, data: new Uint8Array(stdout) }, { format: 'jpeg', quality: 95 });
    const lm68 = Float32Array.from({ length: N * 136 }, (_, i) => lm68Of(Math.floor(i / 136), Math.floor((i % 136) / 2), i % 2));
    const masks = maskRowsFromLandmarks68(lm68, SIZE);
    const sampler = difftalkReferenceSampler({ seed: 23, policy: 'farthest' });
    const refs = sampler.sample(CLIP, N);
    assert.ok(refs.ok);
    const meta: ShardMetadata = {
      fps: 25,
      size: SIZE,
      imageFormat: 'jpeg',
      jpegQuality: 95,
      landmarker: { engine: 'test-formula', model: 'none', sha256: '0'.repeat(64), smoothing: { kind: 'none' } },
      audioFeatures: [{ name: 'mfcc', column: 'audio_mfcc', window: MFCC.window, dim: MFCC.dim, rate: 100, params: {} }],
      reference: sampler.params,
      toolVersion: '0.0.0-test',
    };
    const res = await writeClipShards(
      data,
      {
        clipId: CLIP,
        split: 'train',
        fps: 25,
        images,
        faceStatus: Array.from({ length: N }, () => 'ok'),
        faceScore: new Float32Array(N).fill(1),
        landmarks478: Float32Array.from({ length: N * 1434 }, (_, i) => i % 97),
        landmarks478Raw: new Float32Array(N * 1434).fill(1),
        landmarks68: lm68,
        maskRowTrain: masks.train,
        maskRowTest: masks.test,
        audio: [
          {
            name: 'mfcc',
            windows: { data: Float32Array.from({ length: N * 260 }, (_, i) => mfccOf(Math.floor(i / 260), i % 260)), frames: N, ...MFCC },
          },
        ],
        refFrameIndex: refs.value,
      },
      { maxRows: 1000, metadata: meta },
    );
    await writeDatasetManifest(
      data,
      buildDatasetManifest({ config: {}, clips: [{ id: CLIP, identity: 'AOC', split: 'train', status: 'done', frames: N, shards: res.files, notes: [] }] }),
    );
  });

  /** Run a doc block plus `check` (Python printing one JSON line last) in the work folder. */
  async function run(python: string, block: string, check: string): Promise<Record<string, unknown>> {
    const file = path.join(work, `snippet-${Math.random().toString(36).slice(2)}.py`);
    writeFileSync(file, `${block}\n# --- test ---\nimport json as _json\n${check}\n`);
    const { stdout } = await runProcess(python, [file], { cwd: work });
    const lines = stdout.toString().trim().split('\n');
    return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
  }

  test('pyarrow: one shard, batch by batch (metadata, landmarks, audio window, JPEG bytes, mask row)', async (t) => {
    const { python, tried } = await findPython(['pyarrow', 'numpy']);
    if (!python) return t.skip(skipReason(['pyarrow'], tried));
    // after the loop: the last batch (rows 64…69)
    const got = await run(
      python,
      blocks[0]!,
      'print(_json.dumps({"size": size, "n": n, "batches": reader.num_record_batches, "lm68": lm68[5].tolist(), "lm478": lm478.shape, "mfcc": mfcc[5].tolist(), "jpeg": list(jpegs[5]), "mask": mask_row.tolist()}))',
    );
    assert.equal(got.size, SIZE);
    assert.equal(got.batches, 2);
    assert.equal(got.n, N - 64);
    assert.deepEqual(got.lm478, [N - 64, 478, 3]);
    const f = 69;
    assert.deepEqual(
      got.lm68,
      Array.from({ length: 68 }, (_, p) => [lm68Of(f, p, 0), lm68Of(f, p, 1)]),
    );
    assert.deepEqual(
      got.mfcc,
      Array.from({ length: MFCC.window }, (_, w) => Array.from({ length: MFCC.dim }, (_, d) => mfccOf(f, w * MFCC.dim + d))),
    );
    assert.deepEqual(got.jpeg, [...images[f]!]);
    assert.deepEqual(
      got.mask,
      Array.from({ length: N - 64 }, (_, i) => Math.floor(lm68Of(64 + i, 30, 1))),
    );
  });

  test('pyarrow.dataset: the done clips of dataset.json as one table, filtered by split', async (t) => {
    const { python, tried } = await findPython(['pyarrow', 'numpy']);
    if (!python) return t.skip(skipReason(['pyarrow'], tried));
    const got = await run(python, blocks[1]!, 'print(_json.dumps({"rows": table.num_rows, "lm68": lm68.shape, "first": lm68[0, 0].tolist()}))');
    assert.deepEqual(got, { rows: N, lm68: [N, 68, 2], first: [lm68Of(0, 0, 0), lm68Of(0, 0, 1)] });
  });

  test('polars: scan_ipc over the shards', async (t) => {
    const { python, tried } = await findPython(['polars', 'numpy']);
    if (!python) return t.skip(skipReason(['polars'], tried));
    const got = await run(
      python,
      blocks[2]!,
      'print(_json.dumps({"rows": df.height, "lm68": lm68.shape, "last": lm68[-1, 67].tolist(), "clips": per_clip["clip_id"].to_list(), "frames": per_clip["frames"].to_list()}))',
    );
    assert.deepEqual(got, { rows: N, lm68: [N, 68, 2], last: [lm68Of(N - 1, 67, 0), lm68Of(N - 1, 67, 1)], clips: [CLIP], frames: [N] });
  });

  test("PyTorch Dataset: DiffTalk's per-frame tensors (image, mask rule, reference, 39 landmarks, audio)", async (t) => {
    const { python, tried } = await findPython(['pyarrow', 'torch', 'PIL']);
    if (!python) return t.skip(skipReason(['pyarrow', 'torch'], tried));
    const check = `
ds = DiffTalkShards("data", "train")
x = ds[66]
batch = next(iter(loader))
row = x["image_mask"][int(${Math.floor(lm68Of(66, 30, 1))}):]
print(_json.dumps({"len": len(ds), "shapes": {k: list(v.shape) for k, v in x.items() if hasattr(v, "shape")},
  "dtypes": sorted({str(v.dtype) for v in x.values() if hasattr(v, "dtype")}), "frame": x["frame_index"],
  "masked_all_minus1": bool((row == -1).all()), "above_equal": bool((x["image_mask"][:${Math.floor(lm68Of(66, 30, 1))}] == x["image"][:${Math.floor(lm68Of(66, 30, 1))}]).all()),
  "lm": x["landmarks"][4].tolist(), "audio0": float(x["audio"][0]), "batch": list(batch["image"].shape),
  "img_min": float(x["image"].min()), "img_max": float(x["image"].max())}))`;
    const got = await run(python, blocks[3]!, check);
    assert.equal(got.len, N);
    assert.equal(got.frame, 66);
    assert.deepEqual(got.shapes, { image: [SIZE, SIZE, 3], image_mask: [SIZE, SIZE, 3], reference_img: [SIZE, SIZE, 3], landmarks: [39, 2], audio: [260] });
    assert.deepEqual(got.dtypes, ['torch.float32']);
    assert.equal(got.masked_all_minus1, true);
    assert.equal(got.above_equal, true);
    assert.deepEqual(got.lm, [lm68Of(66, 13, 0), lm68Of(66, 13, 1)], 'condition point 4 = iBUG point 13');
    assert.equal(got.audio0, mfccOf(66, 0));
    assert.deepEqual(got.batch, [8, SIZE, SIZE, 3]);
    assert.ok((got.img_min as number) >= -1 && (got.img_max as number) <= 1);
  });
});
