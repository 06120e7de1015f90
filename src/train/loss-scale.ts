/**
 * Dynamic loss scaling for mixed-precision training, with torch.cuda.amp.GradScaler's semantics and defaults: the
 * loss is multiplied by `scale` before backprop (so small gradients survive f16 operands), the gradients are divided
 * by it again before clipping and the update; a step whose gradients hold inf/NaN is skipped (no AdamW update, no
 * AdamW step count) and the scale multiplied by `backoff`; after `interval` consecutive good steps it is multiplied
 * by `growth`. The state (scale, good steps since the last change) is saved in state.json, so a resumed run keeps it.
 */
import { DifftalkError } from '../util/errors.js';

export interface LossScaleConfig {
  init: number;
  growth: number;
  backoff: number;
  interval: number;
}

/** torch.cuda.amp.GradScaler's defaults. */
export const GRAD_SCALER: LossScaleConfig = { init: 65536, growth: 2, backoff: 0.5, interval: 2000 };

export interface LossScaleState {
  config: LossScaleConfig;
  scale: number;
  /** Consecutive good steps since the scale last changed (GradScaler's growth tracker). */
  goodSteps: number;
  /** Steps skipped so far for inf/NaN gradients (reported, not part of GradScaler's state). */
  skipped: number;
}

function validConfig(c: LossScaleConfig): boolean {
  return (
    c.init > 0 &&
    Number.isFinite(c.init) &&
    c.growth > 1 &&
    Number.isFinite(c.growth) &&
    c.backoff > 0 &&
    c.backoff < 1 &&
    Number.isInteger(c.interval) &&
    c.interval >= 1
  );
}

export class LossScaler {
  config: LossScaleConfig;
  scale: number;
  goodSteps = 0;
  skipped = 0;

  constructor(config: Partial<LossScaleConfig> = {}) {
    this.config = { ...GRAD_SCALER, ...config };
    if (!validConfig(this.config))
      throw new DifftalkError(
        'bad-flag',
        `loss scaling needs init > 0, growth > 1, 0 < backoff < 1 and an integer interval ≥ 1 (got ${JSON.stringify(this.config)})`,
      );
    this.scale = this.config.init;
  }

  /**
   * Record one step's outcome (whether its unscaled gradients were all finite); returns whether to apply the update.
   * Non-finite: skip, scale × backoff, count reset. Finite: apply; after `interval` in a row, scale × growth.
   */
  update(finite: boolean): boolean {
    if (!finite) {
      this.scale *= this.config.backoff;
      this.goodSteps = 0;
      this.skipped++;
      return false;
    }
    this.goodSteps++;
    if (this.goodSteps >= this.config.interval) {
      this.scale *= this.config.growth;
      this.goodSteps = 0;
    }
    return true;
  }

  state(): LossScaleState {
    return { config: { ...this.config }, scale: this.scale, goodSteps: this.goodSteps, skipped: this.skipped };
  }

  /** Restore a saved state, its config included, as GradScaler.load_state_dict (from state.json: untrusted, so checked). */
  load(s: LossScaleState): void {
    const ok =
      s &&
      typeof s === 'object' &&
      s.scale > 0 &&
      Number.isFinite(s.scale) &&
      Number.isInteger(s.goodSteps) &&
      s.goodSteps >= 0 &&
      s.config &&
      validConfig(s.config);
    if (!ok) throw new DifftalkError('checkpoint-corrupt', `the checkpoint's loss-scale state is not valid: ${JSON.stringify(s)}`);
    this.config = { init: s.config.init, growth: s.config.growth, backoff: s.config.backoff, interval: s.config.interval };
    this.scale = s.scale;
    this.goodSteps = s.goodSteps;
    this.skipped = Number.isInteger(s.skipped) && s.skipped >= 0 ? s.skipped : 0;
  }
}
