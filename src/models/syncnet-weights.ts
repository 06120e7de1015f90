/**
 * Where SyncNet weights come from, and how scores name them.
 * - The official syncnet_v2.model (joonson/syncnet_python `download_model.sh`) is a PyTorch state_dict; it is
 *   imported once into the weights cache as kind `syncnet-v2` (`difftalk weights import --kind syncnet-v2
 *   --model syncnet_v2.model`; this module registers the converter) and loaded with `loadSyncNetRunner()` (eval, on
 *   tfjs or onnxruntime) or `loadSyncNet()` (the tfjs training network).
 * - A file can also be given directly: a run or checkpoint folder of `difftalk train syncnet` (its model.safetensors
 *   metadata carries the width/embedding config and `difftalk.trained_by`), such a `.safetensors` file itself, or any
 *   PyTorch file holding the state_dict.
 * Every score is labelled with the weights' identity: source, file, sha256, and "trained by difftalk" for
 * checkpoints this project trained (those are NOT the published SyncNet and their LSE values are not comparable
 * with papers).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import { sha256File } from '../util/fs.js';
import { readSafetensors } from '../weights/safetensors.js';
import { loadWeights, registerWeightConverter, requireWeights } from './weights-store.js';
import { resolveCheckpoint } from './checkpoint.js';
import { readTorchFile, stateDict, type TensorData } from '../weights/torch.js';
import type { NetExecutor } from './net-runner.js';
import { SyncNet, SyncNetRunner, SYNCNET_V2_CONFIG, syncnetParamShapes, type NamedTensor, type SyncNetConfig } from './syncnet.js';

export interface SyncNetIdentity {
  /**
   * 'syncnet-v2' = the published weights (imported kind, or a PyTorch state_dict file such as syncnet_v2.model);
   * 'difftalk-trained' = a checkpoint from `difftalk train syncnet`; 'user' = other safetensors in the same layout.
   */
  source: 'syncnet-v2' | 'difftalk-trained' | 'user';
  file: string;
  sha256: string;
  config: SyncNetConfig;
  /** Short label used in metric names, e.g. `syncnet-v2:3f2a…` or `difftalk-sync-w0.25:9c1d…`. */
  label: string;
  /** One line for reports. */
  description: string;
}

export interface LoadedSyncNet {
  net: SyncNet;
  identity: SyncNetIdentity;
}

function toNamed(tensors: Map<string, TensorData>, file: string): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  for (const [k, t] of tensors) {
    if (k.endsWith('num_batches_tracked')) continue;
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${file}: ${k} is ${t.dtype}, expected float32`);
    out.set(k, { shape: t.shape, data: t.data });
  }
  return out;
}

function identityOf(source: SyncNetIdentity['source'], file: string, sha: string, config: SyncNetConfig): SyncNetIdentity {
  const short = sha.slice(0, 12);
  if (source === 'syncnet-v2') {
    return { source, file, sha256: sha, config, label: `syncnet-v2:${short}`, description: `SyncNet v2 published weights (${file}, sha256 ${sha})` };
  }
  if (source === 'user') {
    return {
      source,
      file,
      sha256: sha,
      config,
      label: `syncnet-user:${short}`,
      description: `user-supplied SyncNet-layout weights (${file}, sha256 ${sha}); not the published syncnet_v2 unless you know otherwise`,
    };
  }
  const arch = config.width === 1 && config.embedDim === 1024 ? 'full' : `w${config.width}-e${config.embedDim}`;
  return {
    source,
    file,
    sha256: sha,
    config,
    label: `difftalk-sync-${arch}:${short}`,
    description: `SyncNet-style expert trained by difftalk (${file}, sha256 ${sha}, width ${config.width}, embedding ${config.embedDim}${
      arch === 'full' ? '' : ', NOT the published architecture'
    }); scores are not comparable with published LSE numbers`,
  };
}

/** Converter for `difftalk weights import --kind syncnet-v2 --model syncnet_v2.model`. */
registerWeightConverter('syncnet-v2', async ({ inputs }) => {
  const file = inputs.model!;
  const sd = stateDict(await readTorchFile(file), { stripPrefix: 'module.' });
  const tensors = new Map<string, TensorData>();
  for (const [name, shape] of syncnetParamShapes(SYNCNET_V2_CONFIG)) {
    if (name.endsWith('num_batches_tracked')) continue;
    const t = sd.get(name) ?? sd.get(`__S__.${name}`);
    if (!t) throw new DifftalkError('bad-weights', `${file}: tensor ${name} is missing (is this syncnet_v2.model?)`);
    if (t.shape.join() !== shape.join()) throw new DifftalkError('bad-weights', `${file}: ${name} has shape [${t.shape}], expected [${shape}]`);
    if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${file}: ${name} is ${t.dtype}, expected float32`);
    tensors.set(name, { dtype: 'float32', shape: [...shape], data: t.data });
  }
  return { tensors, metadata: { 'difftalk.syncnet_config': JSON.stringify(SYNCNET_V2_CONFIG) } };
});

/**
 * Read SyncNet weights (PyTorch layout and names) and their identity: from `file` when given (a run or checkpoint
 * folder of `difftalk train syncnet` — its model.safetensors —, a .safetensors file, or a PyTorch state_dict such as
 * syncnet_v2.model), else the imported `syncnet-v2` kind from the weights cache (a clear
 * DifftalkError('weights-missing') with the import command when it was never imported).
 */
export async function readSyncNetWeights(
  file?: string,
  options: { cacheDir?: string } = {},
): Promise<{ tensors: Map<string, NamedTensor>; identity: SyncNetIdentity }> {
  if (!file) {
    const cached = await requireWeights('syncnet-v2', options);
    const tensors = await loadWeights('syncnet-v2', options);
    return { tensors: toNamed(tensors, cached), identity: identityOf('syncnet-v2', cached, await sha256File(cached), SYNCNET_V2_CONFIG) };
  }
  let abs = path.resolve(file);
  if (await isDirectory(abs)) {
    const dir = await resolveCheckpoint(abs);
    if (!dir)
      throw new DifftalkError('file-missing', `${abs} is a folder but neither a \`difftalk train syncnet\` run (latest.json) nor a checkpoint (state.json)`, {
        suggestion: 'pass the --out folder of `difftalk train syncnet`, one of its ckpt-* folders, or a weights file',
      });
    abs = path.join(dir, 'model.safetensors');
  }
  let sha: string;
  try {
    sha = await sha256File(abs);
  } catch {
    throw new DifftalkError('file-missing', `SyncNet weights file ${abs} does not exist or cannot be read`);
  }
  if (abs.endsWith('.safetensors')) {
    const st = await readSafetensors(abs);
    const cfgJson = st.metadata['difftalk.syncnet_config'];
    const config: SyncNetConfig = cfgJson ? (JSON.parse(cfgJson) as SyncNetConfig) : SYNCNET_V2_CONFIG;
    const trained = st.metadata['difftalk.trained_by'] === 'difftalk';
    return { tensors: toNamed(st.tensors, abs), identity: identityOf(trained ? 'difftalk-trained' : 'user', abs, sha, config) };
  }
  const sd = stateDict(await readTorchFile(abs), { stripPrefix: 'module.' });
  return { tensors: toNamed(sd, abs), identity: identityOf('syncnet-v2', abs, sha, SYNCNET_V2_CONFIG) };
}

/** SyncNet weights (readSyncNetWeights) as the tfjs `SyncNet` (training, and scoring a training run's own network). */
export async function loadSyncNet(file?: string, options: { cacheDir?: string } = {}): Promise<LoadedSyncNet> {
  const { tensors, identity } = await readSyncNetWeights(file, options);
  return { net: SyncNet.fromTensors(tensors, identity.config), identity };
}

/**
 * SyncNet weights (readSyncNetWeights) as the scoring network of eval: both branches' network descriptions on
 * `executor` ('tfjs' default, 'onnx', or 'auto': onnxruntime when it loads, else tfjs; models/syncnet.ts SyncNetRunner).
 */
export async function loadSyncNetRunner(
  file?: string,
  options: { cacheDir?: string; executor?: NetExecutor } = {},
): Promise<{ net: SyncNetRunner; identity: SyncNetIdentity }> {
  const { tensors, identity } = await readSyncNetWeights(file, options);
  return { net: await SyncNetRunner.create(tensors, identity.config, options.executor), identity };
}

async function isDirectory(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}
