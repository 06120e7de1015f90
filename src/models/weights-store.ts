/**
 * The weights cache: converted weights as safetensors files in `$DIFFTALK_CACHE/weights` (default
 * `~/.cache/difftalk/weights`), plus `index.json` recording, per kind, the converted file's sha256 and the sources
 * it came from (path, sha256, how it was verified).
 *
 * Weight kinds live in an extensible table: {@link registerWeightKind} adds a kind (its source files, where users
 * get them, and a `convert` function), {@link registerWeightConverter} attaches a converter to a kind already
 * described here. `requireWeights` / `loadWeights` give model code the converted file or a DifftalkError naming the
 * files to download and the exact `difftalk weights import` command.
 */
import { mkdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { exists, readJson, sha256File, writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { readSafetensors, writeSafetensors } from '../weights/safetensors.js';
import { featureParams } from './torchvision-features.js';
import { readTorchFile, readZipMember, stateDict, type TensorData } from '../weights/torch.js';
import { downloadFile } from '../weights/download.js';

/** One user-supplied source file of a weight kind. */
export interface WeightSource {
  /** CLI flag / input name (e.g. 'backbone' → `--backbone <file>`). */
  flag: string;
  /** The file name users have (e.g. alexnet-owt-7be5be79.pth). */
  fileName: string;
  /** Where to get it. */
  url: string;
  description: string;
  /** Full sha256 (hex) when known. */
  sha256?: string;
  /** Leading sha256 hex digits when only those are known (torchvision puts 8 of them in file names). */
  sha256Prefix?: string;
  /**
   * Where `difftalk weights fetch` downloads it from (the official URL) and the largest size accepted. When upstream
   * ships the file inside a zip: `archive` is the zip's file name (what is downloaded, resumed and hashed) and `member`
   * the one entry that is this source (`fileName` is then written from it, atomically, beside the zip).
   */
  download?: { url: string; maxBytes: number; archive?: { fileName: string; member: RegExp } };
}

export interface ConvertContext {
  /** Source paths by flag. */
  inputs: Record<string, string>;
  onEvent: OnEvent;
}

export interface ConvertResult {
  tensors: Map<string, TensorData>;
  /** Extra string metadata stored in the safetensors header. */
  metadata?: Record<string, string>;
}

export interface WeightKindSpec {
  kind: string;
  description: string;
  sources: WeightSource[];
  /** Converts the sources into the tensors stored in the cache; absent = conversion not implemented yet. */
  convert?: (ctx: ConvertContext) => Promise<ConvertResult>;
}

const KINDS = new Map<string, WeightKindSpec>();

/** Add or replace a weight kind. */
export function registerWeightKind(spec: WeightKindSpec): void {
  KINDS.set(spec.kind, spec);
}

/** Attach (or replace) the converter of a kind that is already described. */
/**
 * The tensors `params` names, checked against a converter's input state_dict: each present, of that shape and float32
 * (else DifftalkError('bad-weights') naming `file`, the tensor and, when missing, `hint`, the file the user meant).
 * `keep` (default all) says which checked tensors are returned.
 */
export function pickFloat32Tensors(
  sd: ReadonlyMap<string, TensorData>,
  params: Iterable<readonly [string, readonly number[]]>,
  file: string,
  hint: string,
  keep: (name: string) => boolean = () => true,
): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, shape] of params) {
    const t = sd.get(name);
    if (!t) throw new DifftalkError('bad-weights', `${file}: tensor ${name} is missing (is this ${hint}?)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError('bad-weights', `${file}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${file}: ${name} is ${t.dtype}, expected float32`);
    if (keep(name)) out.set(name, { dtype: 'float32', shape: [...shape], data: t.data });
  }
  return out;
}

export function registerWeightConverter(kind: string, convert: NonNullable<WeightKindSpec['convert']>): void {
  const spec = getWeightKind(kind);
  KINDS.set(kind, { ...spec, convert });
}

export function listWeightKinds(): WeightKindSpec[] {
  return [...KINDS.values()];
}

export function getWeightKind(kind: string): WeightKindSpec {
  const spec = KINDS.get(kind);
  if (!spec) {
    throw new DifftalkError('unknown-weight-kind', `unknown weight kind '${kind}'`, { suggestion: `Known kinds: ${[...KINDS.keys()].join(', ')}` });
  }
  return spec;
}

/** `$DIFFTALK_CACHE/weights`, else `~/.cache/difftalk/weights`. */
export function weightsDir(cacheDir?: string): string {
  if (cacheDir) return cacheDir;
  const root = process.env.DIFFTALK_CACHE ?? path.join(os.homedir(), '.cache', 'difftalk');
  return path.join(root, 'weights');
}

export interface SourceRecord {
  flag: string;
  path: string;
  sha256: string;
  /** 'sha256' = full hash matched, 'sha256-prefix' = file-name hash prefix matched, 'unverified' = no known hash. */
  verified: 'sha256' | 'sha256-prefix' | 'unverified';
}

export interface IndexEntry {
  kind: string;
  file: string;
  sha256: string;
  bytes: number;
  tensors: number;
  parameters: number;
  importedAt: string;
  sources: SourceRecord[];
}

interface WeightsIndex {
  version: 1;
  entries: Record<string, IndexEntry>;
}

async function readIndex(dir: string): Promise<WeightsIndex> {
  const file = path.join(dir, 'index.json');
  if (!(await exists(file))) return { version: 1, entries: {} };
  try {
    const idx = await readJson<WeightsIndex>(file);
    if (idx.version !== 1 || typeof idx.entries !== 'object') throw new Error('bad version');
    return idx;
  } catch {
    throw new DifftalkError('bad-weights-index', `${file} is not a valid weights index`, { suggestion: `Delete it and re-run difftalk weights import.` });
  }
}

/** The exact import command for a kind (with its source file names as placeholders). */
export function importCommand(spec: WeightKindSpec): string {
  return ['difftalk weights import --kind', spec.kind, ...spec.sources.map((s) => `--${s.flag} <path/to/${s.fileName}>`)].join(' ');
}

function missingError(spec: WeightKindSpec, why: string): DifftalkError {
  const files = spec.sources.map((s) => `  - ${s.fileName} (${s.description}): ${s.url}`).join('\n');
  const conv = spec.convert ? '' : ' (note: conversion for this kind is not implemented in this version)';
  return new DifftalkError('weights-missing', `${spec.kind} weights ${why}. ${spec.description} needs:\n${files}`, {
    suggestion: `Download the file(s) above, then run: ${importCommand(spec)}${conv}`,
  });
}

/**
 * Path of the converted weights of `kind` in the cache. Throws DifftalkError('weights-missing') naming the files
 * to get and the import command when they were never imported, or 'weights-corrupt' when the file's sha256 no
 * longer matches the index (`verify: false` skips hashing).
 */
export async function requireWeights(kind: string, options: { cacheDir?: string; verify?: boolean; fetch?: boolean; onEvent?: OnEvent } = {}): Promise<string> {
  const spec = getWeightKind(kind);
  const dir = weightsDir(options.cacheDir);
  let entry = (await readIndex(dir)).entries[kind];
  if (!entry && options.fetch && spec.convert && spec.sources.every((s) => s.download)) {
    // first use: one clear line of what is downloaded from where (fetchWeights logs each URL), then the import
    (options.onEvent ?? silent)({ type: 'log', level: 'info', message: `${kind} weights are not cached yet: fetching them (difftalk weights fetch ${kind})` });
    entry = (await fetchWeights(kind, { cacheDir: options.cacheDir, onEvent: options.onEvent })).imported;
  }
  if (!entry) throw missingError(spec, `are not in the weights cache (${dir})`);
  const file = path.join(dir, entry.file);
  if (!(await exists(file))) throw missingError(spec, `are listed in the index but ${file} is gone`);
  if (options.verify !== false && (await sha256File(file)) !== entry.sha256) {
    throw new DifftalkError('weights-corrupt', `${file} does not match its recorded sha256`, { suggestion: `Re-run: ${importCommand(spec)}` });
  }
  return file;
}

/**
 * The provenance label of an imported kind: "published weights" only when every source file the user gave (or that
 * was downloaded) matched its pinned upstream hash (full sha256, or torchvision's file-name prefix); otherwise
 * "unverified file <sha256[:12]>" of the first unverified source. The hash is always that of the original file, not
 * of the converted cache file.
 */
export function weightsLabel(entry: Pick<IndexEntry, 'sources'>): string {
  const unverified = entry.sources.find((s) => s.verified === 'unverified');
  return unverified ? `unverified file ${unverified.sha256.slice(0, SHORT_HASH)}` : 'published weights';
}

const SHORT_HASH = 12;

/** The index entry of an imported kind, or undefined. */
export async function weightsEntry(kind: string, options: { cacheDir?: string } = {}): Promise<IndexEntry | undefined> {
  getWeightKind(kind);
  return (await readIndex(weightsDir(options.cacheDir))).entries[kind];
}

export interface FetchResult {
  kind: string;
  /** Downloaded source files (kept in `<cache>/downloads/`). */
  downloads: { flag: string; url: string; file: string; sha256: string; bytes: number; verified: SourceRecord['verified']; resumedFrom: number }[];
  /** The import result, when the kind has a converter (else the files are only downloaded and verified). */
  imported?: ImportResult;
  label: string;
}

/**
 * Download the sources of `kind` from their official URLs (or `mirror`/<fileName>, for air-gapped mirrors and
 * tests; `DIFFTALK_WEIGHTS_MIRROR` sets it for every fetch), verify each against its pinned hash, then import
 * (convert + cache) them. Resumable: a rerun continues an interrupted download. Offline, the error names the URL and the manual `difftalk weights import` command.
 */
export async function fetchWeights(kind: string, options: { cacheDir?: string; onEvent?: OnEvent; mirror?: string } = {}): Promise<FetchResult> {
  const spec = getWeightKind(kind);
  const onEvent = options.onEvent ?? silent;
  const missing = spec.sources.filter((s) => !s.download);
  if (missing.length) {
    throw new DifftalkError(
      'not-implemented',
      `${kind}: downloading ${missing.map((s) => s.fileName).join(', ')} is not supported (${missing.map((s) => s.url).join('; ')})`,
      { suggestion: `Download by hand, then run: ${importCommand(spec)}` },
    );
  }
  const dir = path.join(weightsDir(options.cacheDir), 'downloads', kind);
  const downloads: FetchResult['downloads'] = [];
  const mirror = options.mirror ?? process.env.DIFFTALK_WEIGHTS_MIRROR;
  const downloadName = (s: WeightSource) => s.download!.archive?.fileName ?? s.fileName;
  const inputs: Record<string, string> = {};
  for (const s of spec.sources) {
    const url = mirror ? `${mirror.replace(/\/$/, '')}/${downloadName(s)}` : s.download!.url;
    onEvent({ type: 'log', level: 'info', message: `downloading ${downloadName(s)} for ${kind} from ${url} into ${dir}` });
    const r = await downloadFile(url, path.join(dir, downloadName(s)), {
      maxBytes: s.download!.maxBytes,
      sha256: s.sha256,
      sha256Prefix: s.sha256Prefix,
      onEvent,
      offlineHint: `Without network access: download ${spec.sources.map((x) => (mirror ? `${mirror.replace(/\/$/, '')}/${downloadName(x)}` : x.download!.url)).join(' and ')} on another machine${spec.sources.some((x) => x.download!.archive) ? ' (unzip it)' : ''}, then run: ${importCommand(spec)}`,
    });
    downloads.push({ flag: s.flag, url, file: r.file, sha256: r.sha256, bytes: r.bytes, verified: r.verified, resumedFrom: r.resumedFrom });
    inputs[s.flag] = r.file;
    const archive = s.download!.archive;
    if (archive) {
      // the member's name in the zip is only matched, never used as a path; readZipMember bounds its size
      const member = await readZipMember(r.file, archive.member);
      const out = path.join(dir, s.fileName);
      onEvent({ type: 'log', level: 'info', message: `extracting ${member.name} from ${downloadName(s)} to ${out}` });
      await writeFileAtomic(out, member.bytes);
      inputs[s.flag] = out;
    }
  }
  const records = downloads.map((d) => ({ sha256: d.sha256, verified: d.verified }));
  if (!spec.convert) return { kind, downloads, label: weightsLabel({ sources: records as SourceRecord[] }) };
  const imported = await importWeights(kind, inputs, { cacheDir: options.cacheDir, onEvent });
  return { kind, downloads, imported, label: weightsLabel(imported) };
}

/** The converted tensors of `kind` (requireWeights + safetensors read). */
export async function loadWeights(
  kind: string,
  options: { cacheDir?: string; verify?: boolean; fetch?: boolean; onEvent?: OnEvent } = {},
): Promise<Map<string, TensorData>> {
  return (await readSafetensors(await requireWeights(kind, options))).tensors;
}

/** Check a source file against its known hash. Throws DifftalkError('checksum-mismatch'). */
export async function verifySource(source: WeightSource, file: string): Promise<SourceRecord> {
  try {
    if (!(await stat(file)).isFile()) throw new Error('not a file');
  } catch {
    throw new DifftalkError('not-found', `--${source.flag}: ${file} does not exist or is not a file`, {
      suggestion: `Get ${source.fileName} from ${source.url}`,
    });
  }
  const hash = await sha256File(file);
  const base = { flag: source.flag, path: path.resolve(file), sha256: hash };
  if (source.sha256) {
    if (hash !== source.sha256) throw checksumError(source, file, hash, source.sha256);
    return { ...base, verified: 'sha256' };
  }
  if (source.sha256Prefix) {
    if (!hash.startsWith(source.sha256Prefix)) throw checksumError(source, file, hash, `${source.sha256Prefix}…`);
    return { ...base, verified: 'sha256-prefix' };
  }
  return { ...base, verified: 'unverified' };
}

function checksumError(source: WeightSource, file: string, got: string, want: string): DifftalkError {
  return new DifftalkError('checksum-mismatch', `--${source.flag}: ${file} has sha256 ${got}, expected ${want} (${source.fileName})`, {
    suggestion: `Pass the unmodified ${source.fileName} from ${source.url}`,
  });
}

export interface ImportResult extends IndexEntry {
  path: string;
}

/** Verify the sources of `kind`, convert them, write `<kind>.safetensors` atomically and record it in the index. */
export async function importWeights(
  kind: string,
  inputs: Record<string, string>,
  options: { cacheDir?: string; onEvent?: OnEvent } = {},
): Promise<ImportResult> {
  const spec = getWeightKind(kind);
  const onEvent = options.onEvent ?? silent;
  if (!spec.convert) {
    throw new DifftalkError('not-implemented', `importing ${kind} weights is not implemented yet (no converter registered)`);
  }
  for (const s of spec.sources) {
    if (!inputs[s.flag]) throw new DifftalkError('missing-input', `${kind} needs --${s.flag} <${s.fileName}>`, { suggestion: importCommand(spec) });
  }
  const unknown = Object.keys(inputs).filter((k) => !spec.sources.some((s) => s.flag === k));
  if (unknown.length) throw new DifftalkError('bad-input', `${kind} does not take --${unknown.join(', --')}`, { suggestion: importCommand(spec) });
  const sources: SourceRecord[] = [];
  for (const s of spec.sources) {
    onEvent({ type: 'log', level: 'info', message: `verifying ${s.fileName}` });
    sources.push(await verifySource(s, inputs[s.flag]!));
  }
  onEvent({ type: 'log', level: 'info', message: `converting ${kind}` });
  const { tensors, metadata } = await spec.convert({ inputs, onEvent });
  const dir = weightsDir(options.cacheDir);
  await mkdir(dir, { recursive: true });
  const fileName = `${kind}.safetensors`;
  const file = path.join(dir, fileName);
  await writeSafetensors(file, tensors, { kind, ...(metadata ?? {}) });
  const { size } = await stat(file);
  let parameters = 0;
  for (const t of tensors.values()) parameters += t.shape.reduce((a, b) => a * b, 1);
  const entry: IndexEntry = {
    kind,
    file: fileName,
    sha256: await sha256File(file),
    bytes: size,
    tensors: tensors.size,
    parameters,
    importedAt: new Date().toISOString(),
    sources,
  };
  const index = await readIndex(dir);
  index.entries[kind] = entry;
  await writeJsonAtomic(path.join(dir, 'index.json'), index);
  return { ...entry, path: file };
}

// ---------------------------------------------------------------------------------------------------------------
// Built-in kinds

/** Keep the listed entries of a torch state dict as float32, checking names and shapes. */
function pick(sd: Map<string, TensorData>, wanted: [string, number[]][], file: string, rename: (k: string) => string = (k) => k): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, shape] of wanted) {
    const t = sd.get(name);
    if (!t) throw new DifftalkError('bad-weights', `${file}: tensor ${name} is missing (is this the right file?)`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DifftalkError('bad-weights', `${file}: ${name} has shape [${t.shape}], expected [${shape}]`);
    }
    if (t.dtype !== 'float32' && t.dtype !== 'float16' && t.dtype !== 'bfloat16') throw new DifftalkError('bad-weights', `${file}: ${name} is ${t.dtype}`);
    out.set(rename(name), { dtype: 'float32', shape: [...shape], data: t.data });
  }
  return out;
}

const MB = 1024 * 1024;
const LPIPS_CHANNELS = { alex: [64, 192, 384, 256, 256], vgg: [64, 128, 256, 512, 512] };
function lpipsKind(net: 'alex' | 'vgg'): WeightKindSpec {
  const tv =
    net === 'alex'
      ? { fileName: 'alexnet-owt-7be5be79.pth', prefix: '7be5be79', what: 'torchvision AlexNet ImageNet weights (≈233 MB)', maxBytes: 300 * MB }
      : { fileName: 'vgg16-397923af.pth', prefix: '397923af', what: 'torchvision VGG16 ImageNet weights (≈528 MB)', maxBytes: 700 * MB };
  return {
    kind: `lpips-${net}`,
    description: `LPIPS v0.1 (${net === 'alex' ? 'AlexNet' : 'VGG16'})`,
    sources: [
      {
        flag: 'backbone',
        fileName: tv.fileName,
        url: `https://download.pytorch.org/models/${tv.fileName}`,
        description: tv.what,
        sha256Prefix: tv.prefix,
        download: { url: `https://download.pytorch.org/models/${tv.fileName}`, maxBytes: tv.maxBytes },
      },
      {
        flag: 'linear',
        fileName: `${net}.pth`,
        url: `https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/${net}.pth`,
        description: 'LPIPS v0.1 learned linear layers (lpips/weights/v0.1 in the LPIPS repository)',
        download: { url: `https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/${net}.pth`, maxBytes: MB },
        sha256:
          net === 'alex'
            ? 'df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0'
            : 'a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868',
      },
    ],
    convert: async ({ inputs }) => {
      const backbone = stateDict(await readTorchFile(inputs.backbone!));
      const linear = stateDict(await readTorchFile(inputs.linear!));
      const tensors = pick(backbone, featureParams(net), inputs.backbone!);
      const lin = pick(
        linear,
        LPIPS_CHANNELS[net].map((c, k): [string, number[]] => [`lin${k}.model.1.weight`, [1, c, 1, 1]]),
        inputs.linear!,
      );
      for (const [k, t] of lin) tensors.set(k, t);
      return { tensors, metadata: { format: 'difftalk-lpips', net, version: '0.1' } };
    },
  };
}

registerWeightKind(lpipsKind('alex'));
registerWeightKind(lpipsKind('vgg'));
// Described here so requireWeights can tell users what to fetch; their converters are registered by the modules
// that implement those networks (registerWeightConverter).
registerWeightKind({
  kind: 'syncnet-v2',
  description: 'SyncNet v2 (LSE-D / LSE-C)',
  sources: [
    {
      flag: 'model',
      fileName: 'syncnet_v2.model',
      url: 'http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model (from download_model.sh in github.com/joonson/syncnet_python)',
      description: 'SyncNet v2 weights (≈55 MB)',
      // no published hash: a fetched file is labelled "unverified file <sha256[:12]>"
      download: { url: 'http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model', maxBytes: 100 * MB },
    },
  ],
});
registerWeightKind({
  kind: 'fid-inception',
  description: 'FID InceptionV3 (pytorch-fid)',
  sources: [
    {
      flag: 'model',
      fileName: 'pt_inception-2015-12-05-6726825d.pth',
      url: 'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth',
      description: 'pytorch-fid InceptionV3 port of the TF FID graph (≈91 MB)',
      // 6726825d in the name follows torch.hub's sha256-prefix convention, but pytorch-fid never checks it and it
      // could not be confirmed here (no network): not pinned, so a fetched file is labelled unverified.
      download: { url: 'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth', maxBytes: 150 * MB },
    },
  ],
});
registerWeightKind({
  kind: 'vq-f4',
  description: 'LDM VQ-f4 first-stage autoencoder (DiffTalk latents)',
  sources: [
    {
      flag: 'model',
      fileName: 'model.ckpt',
      url: 'https://ommer-lab.com/files/latent-diffusion/vq-f4.zip (unzip; the checkpoint is model.ckpt)',
      description: 'CompVis latent-diffusion vq-f4 checkpoint',
      // no published hash: a fetched checkpoint is labelled "unverified file <sha256[:12]>" (of model.ckpt, the file
      // `weights import` would be given by hand, so both routes record the same hash; the zip's is in the fetch result)
      download: {
        url: 'https://ommer-lab.com/files/latent-diffusion/vq-f4.zip',
        maxBytes: 2048 * MB,
        archive: { fileName: 'vq-f4.zip', member: /^(?!__MACOSX\/)(?:[^/]+\/)?model\.ckpt$/ },
      },
    },
  ],
});
registerWeightKind({
  kind: 's3fd',
  description: 'S3FD face detector (syncnet_python reference crop, eval --sync-crop reference)',
  sources: [
    {
      flag: 'model',
      fileName: 'sfd_face.pth',
      url: 'http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth (from download_model.sh in github.com/joonson/syncnet_python)',
      description: 'S3FD weights as syncnet_python uses them (≈86 MB)',
      download: { url: 'http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth', maxBytes: 150 * MB },
    },
  ],
});
registerWeightKind({
  kind: 'i3d',
  description: 'I3D Kinetics-400 (FVD, StyleGAN-V / LatentSync protocol; converter in models/i3d.ts)',
  sources: [
    {
      flag: 'model',
      fileName: 'i3d_torchscript.pt',
      url: 'https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1 (the file StyleGAN-V src/metrics/frechet_video_distance.py downloads)',
      description: 'I3D TorchScript used by StyleGAN-V and LatentSync for FVD (≈50 MB)',
      // no published hash: a fetched file is labelled "unverified file <sha256[:12]>"
      download: { url: 'https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1', maxBytes: 150 * MB },
    },
  ],
});
