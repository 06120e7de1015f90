/** Build a frame metric from its CLI id (one place that maps ids to variants). */
import { DifftalkError } from '../util/errors.js';
import { loadLpips, LpipsMetric } from './lpips.js';
import type { FrameMetric } from './metric.js';
import { PsnrMetric } from './psnr.js';
import { SsimMetric } from './ssim.js';

export const FRAME_METRIC_IDS = ['psnr', 'ssim', 'ssim-gaussian', 'ssim-skimage', 'lpips', 'lpips-alex', 'lpips-vgg'] as const;
export type FrameMetricId = (typeof FRAME_METRIC_IDS)[number];

/**
 * `ssim` = `ssim-gaussian` (default variant), `lpips` = `lpips-alex`. LPIPS loads its weights from the cache
 * (DifftalkError 'weights-missing' with the import command when absent); the tfjs backend must be initialised first.
 * Dispose an LPIPS metric's model (`metric.model.dispose()`) when done.
 */
export async function createFrameMetric(id: string, options: { cacheDir?: string; lpipsBatch?: number } = {}): Promise<FrameMetric> {
  switch (id as FrameMetricId) {
    case 'psnr':
      return new PsnrMetric();
    case 'ssim':
    case 'ssim-gaussian':
      return new SsimMetric('gaussian');
    case 'ssim-skimage':
      return new SsimMetric('skimage');
    case 'lpips':
    case 'lpips-alex':
      return new LpipsMetric(await loadLpips('alex', { cacheDir: options.cacheDir }), options.lpipsBatch);
    case 'lpips-vgg':
      return new LpipsMetric(await loadLpips('vgg', { cacheDir: options.cacheDir }), options.lpipsBatch);
    default:
      throw new DifftalkError('unknown-metric', `unknown metric '${id}'`, { suggestion: `Use one of: ${FRAME_METRIC_IDS.join(', ')}` });
  }
}
