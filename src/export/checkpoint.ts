/**
 * `difftalk export checkpoint`: a difftalk LDM run (or one of its checkpoints) → a PyTorch Lightning-style checkpoint
 * `{'state_dict': OrderedDict, 'global_step': int, 'difftalk': {source: '<run>/<ckpt>', preset, model_diffusion_model}}` in torch.save's zip format, with the state_dict
 * of the reference DiffTalk LatentDiffusion (`ddpm_talking.py`, configs/latent-diffusion/talking.yaml), so its
 * `load_state_dict(strict=True)` accepts it:
 *
 * - the DDPM schedule buffers (`betas`, `alphas_cumprod`, … `posterior_mean_coef2`, as register_schedule computes them
 *   in float64 and stores them in float32);
 * - `model.diffusion_model.*` (the UNet; its EMA with `ema`), `model_ema.decay`, `model_ema.num_updates` and
 *   `model_ema.diffusion_model<name without dots>` (LitEma);
 * - `first_stage_model.*` (the run's pinned VQ first stage, checked by hash);
 * - `cond_stage_model_for_audio.*`, `cond_stage_model_for_audio_smooth.*`, `cond_stage_model_for_ldm.*`.
 *
 * Names come from the one mapping in `models/difftalk.ts` (`toReferenceName`). Only `out` is written (a temp file
 * next to it, renamed into place); an existing file is replaced only with `force`.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../util/errors.js';
import { silent, type OnEvent } from '../util/events.js';
import { loadCheckpoint } from '../models/checkpoint.js';
import { checkpointSpecs, PREFIX, REFERENCE_FIRST_STAGE, toReferenceName } from '../models/difftalk.js';
import { loadPinnedFirstStage, type FirstStagePin } from '../models/first-stage.js';
import type { DifftalkConfig, ScheduleConfig } from '../models/presets.js';
import { makeBetas } from '../models/schedulers/ddim.js';
import type { TensorData } from '../weights/torch.js';
import { stateDictValue, writeTorchFile } from '../weights/torch-writer.js';
import type { PickleValue } from '../weights/pickle-writer.js';

export interface ExportCheckpointOptions {
  /** A `difftalk train ldm` run folder (its latest.json) or one of its ckpt-* folders. */
  run: string;
  /** The .ckpt file to write. */
  out: string;
  /** Write the EMA UNet as `model.diffusion_model.*` too (the weights sampling uses; for configs with use_ema: false). */
  ema?: boolean;
  force?: boolean;
  onEvent?: OnEvent;
}

export interface ExportCheckpointResult {
  out: string;
  /** The checkpoint folder exported. */
  checkpoint: string;
  step: number;
  /** Entries of the state_dict. */
  tensors: number;
  parameters: number;
  bytes: number;
  /** Whether model.diffusion_model.* holds the EMA weights. */
  ema: boolean;
  firstStage: string;
}

interface LdmRunState {
  kind?: unknown;
  step?: unknown;
  config?: DifftalkConfig;
  ema?: { decay: number; numUpdates: number };
  firstStage?: FirstStagePin;
}

const f32 = (shape: number[], data: ArrayLike<number>): TensorData => ({ dtype: 'float32', shape, data: Float32Array.from(data) });

/**
 * The buffers LDM's DDPM.register_schedule (v_posterior 0) keeps in the state_dict, computed in float64 and stored as
 * float32, in registration order. `lvlb_weights` is not persistent, and `logvar` is a plain attribute.
 */
export function referenceScheduleBuffers(c: ScheduleConfig): Map<string, TensorData> {
  const betas = makeBetas(c);
  const T = betas.length;
  const ac = new Float64Array(T);
  let prod = 1;
  for (let i = 0; i < T; i++) ac[i] = prod *= 1 - betas[i]!;
  const prev = Float64Array.from({ length: T }, (_, i) => (i === 0 ? 1 : ac[i - 1]!));
  const map = (f: (i: number) => number) => Float64Array.from({ length: T }, (_, i) => f(i));
  const pv = map((i) => (betas[i]! * (1 - prev[i]!)) / (1 - ac[i]!));
  const entries: [string, Float64Array][] = [
    ['betas', betas],
    ['alphas_cumprod', ac],
    ['alphas_cumprod_prev', prev],
    ['sqrt_alphas_cumprod', map((i) => Math.sqrt(ac[i]!))],
    ['sqrt_one_minus_alphas_cumprod', map((i) => Math.sqrt(1 - ac[i]!))],
    ['log_one_minus_alphas_cumprod', map((i) => Math.log(1 - ac[i]!))],
    ['sqrt_recip_alphas_cumprod', map((i) => Math.sqrt(1 / ac[i]!))],
    ['sqrt_recipm1_alphas_cumprod', map((i) => Math.sqrt(1 / ac[i]! - 1))],
    ['posterior_variance', pv],
    ['posterior_log_variance_clipped', map((i) => Math.log(Math.max(pv[i]!, 1e-20)))],
    ['posterior_mean_coef1', map((i) => (betas[i]! * Math.sqrt(prev[i]!)) / (1 - ac[i]!))],
    ['posterior_mean_coef2', map((i) => ((1 - prev[i]!) * Math.sqrt(1 - betas[i]!)) / (1 - ac[i]!))],
  ];
  return new Map(entries.map(([k, v]) => [k, f32([T], v)]));
}

/** Refuse to replace anything without --force, and never write over a folder. */
async function checkOut(out: string, force: boolean): Promise<void> {
  const st = await stat(out).catch(() => undefined);
  if (!st) return;
  if (!st.isFile()) throw new DifftalkError('output-exists', `${out} exists and is not a file`, { suggestion: 'choose a file name for --out' });
  if (!force) throw new DifftalkError('output-exists', `${out} already exists`, { suggestion: 'pass --force to replace it, or choose another --out' });
}

/** The run's model tensors, checked name by name and shape by shape against its config. */
function checkedModel(model: ReadonlyMap<string, TensorData>, config: DifftalkConfig, dir: string): Map<string, TensorData> {
  const out = new Map<string, TensorData>();
  for (const [name, s] of checkpointSpecs(config)) {
    const t = model.get(name);
    if (!t)
      throw new DifftalkError('checkpoint-corrupt', `${dir}/model.safetensors has no ${name}`, {
        suggestion: 'export a checkpoint of a `difftalk train ldm` run',
      });
    if (t.dtype !== 'float32' || t.shape.join() !== s.shape.join())
      throw new DifftalkError(
        'checkpoint-corrupt',
        `${dir}/model.safetensors: ${name} is ${t.dtype} [${t.shape}], the run's config makes it float32 [${s.shape}]`,
      );
    out.set(name, t);
  }
  return out;
}

export async function exportCheckpoint(o: ExportCheckpointOptions): Promise<ExportCheckpointResult> {
  const onEvent = o.onEvent ?? silent;
  const out = path.resolve(o.out);
  await checkOut(out, Boolean(o.force));
  const saved = await loadCheckpoint<LdmRunState>(path.resolve(o.run));
  const { state, dir } = saved;
  if (state.kind !== 'ldm')
    throw new DifftalkError('first-stage-wrong-kind', `${dir} is a '${String(state.kind)}' checkpoint; export checkpoint takes a \`difftalk train ldm\` run`);
  const config = state.config;
  if (!config || typeof config !== 'object' || !config.unet || !config.audio || !config.ldm || !config.vq || !config.schedule)
    throw new DifftalkError('checkpoint-corrupt', `${dir}/state.json has no model config`);
  if (config.conditionNorm)
    throw new DifftalkError('export-unsupported', `${dir} was trained with --normalize-conditions, which the reference DiffTalk code does not apply`, {
      suggestion: 'export a run trained without --normalize-conditions (the reference feeds raw features and landmarks to its encoders)',
    });
  if (config.audio.winSize !== 16 || config.audio.featureDim !== 29)
    onEvent({
      type: 'log',
      level: 'warn',
      message: `the audio encoder was trained on ${config.audio.winSize}×${config.audio.featureDim} feature windows; the reference DiffTalk reads 16×29 DeepSpeech windows, so its AudioNet shapes differ`,
    });
  const step = typeof state.step === 'number' && Number.isSafeInteger(state.step) && state.step >= 0 ? state.step : 0;
  const model = checkedModel(saved.model, config, dir);

  onEvent({ type: 'log', level: 'info', message: `first stage of ${dir}` });
  if (!state.firstStage) throw new DifftalkError('checkpoint-corrupt', `${dir}/state.json does not name its first stage`);
  const fs = await loadPinnedFirstStage(path.dirname(dir), state.firstStage, { vq: config.vq, imageSize: config.imageSize });
  let firstStage: Map<string, TensorData>;
  try {
    firstStage = fs.params.toTorch(REFERENCE_FIRST_STAGE);
  } finally {
    fs.params.dispose();
  }

  const sd = new Map<string, TensorData>(referenceScheduleBuffers(config.schedule));
  const useEma = Boolean(o.ema);
  for (const [name, t] of model) {
    if (!name.startsWith(PREFIX.unet)) continue;
    sd.set(toReferenceName(name), useEma ? model.get(PREFIX.ema + name.slice(PREFIX.unet.length))! : t);
  }
  const emaState = state.ema;
  sd.set('model_ema.decay', f32([], [typeof emaState?.decay === 'number' ? emaState.decay : 0.9999]));
  const numUpdates = typeof emaState?.numUpdates === 'number' && Number.isSafeInteger(emaState.numUpdates) ? emaState.numUpdates : 0;
  sd.set('model_ema.num_updates', { dtype: 'int32', shape: [], data: Int32Array.of(numUpdates) });
  for (const [name, t] of model) if (name.startsWith(PREFIX.ema)) sd.set(toReferenceName(name), t);
  for (const [name, t] of firstStage) sd.set(name, t);
  for (const prefix of [PREFIX.audio, PREFIX.audioAtt, PREFIX.ldm])
    for (const [name, t] of model) if (name.startsWith(prefix)) sd.set(toReferenceName(name), t);

  onEvent({ type: 'log', level: 'info', message: `writing ${sd.size} tensors to ${out}` });
  const started = Date.now();
  let total = 0;
  for (const t of sd.values()) total += t.data.byteLength;
  onEvent({ type: 'stage-start', stage: 'export-checkpoint', total, unit: 'bytes' });
  // checked again right before writing: a file that appeared meanwhile is not replaced without --force
  await checkOut(out, Boolean(o.force));
  const written = await writeTorchFile(
    out,
    (tensor) =>
      new Map<PickleValue, PickleValue>([
        ['state_dict', stateDictValue(sd, tensor)],
        ['global_step', step],
        [
          'difftalk',
          new Map<PickleValue, PickleValue>([
            ['source', path.join(path.basename(path.dirname(dir)), path.basename(dir))],
            ['preset', String(config.preset)],
            ['model_diffusion_model', useEma ? 'ema' : 'trained'],
          ]),
        ],
      ]),
    { onProgress: (done, all) => onEvent({ type: 'progress', stage: 'export-checkpoint', done, total: all }) },
  ).catch((e: unknown) => {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('write-failed', `cannot write ${out}: ${errorMessage(e)}`, {
      suggestion: 'check that the folder of --out is writable and has space',
    });
  });
  onEvent({ type: 'stage-done', stage: 'export-checkpoint', done: total, seconds: (Date.now() - started) / 1000 });
  let parameters = 0;
  for (const t of sd.values()) parameters += t.data.length;
  return { out, checkpoint: dir, step, tensors: sd.size, parameters, bytes: written.bytes, ema: useEma, firstStage: fs.source };
}
