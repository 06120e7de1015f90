/**
 * Worker-thread side of {@link FramePool}: scores a run of frame pairs with the same single-thread kernels the
 * metrics use (so a frame's value is the same bit for bit on any thread) and transfers the results back.
 */
import { serveTasks } from '../util/worker-pool.js';
import type { FrameReply, FrameRequest } from './frame-pool.js';
import { PSNR_CAP_DB, psnrOfSquaredError, squaredError } from './psnr.js';
import { ssimFrame } from './ssim.js';

serveTasks<FrameRequest, FrameReply>((req) => {
  const pred = new Uint8Array(req.pred);
  const target = new Uint8Array(req.target);
  const n = req.width * req.height * 3;
  const values = new Float64Array(req.count);
  if (req.op === 'psnr') {
    const identical = new Uint8Array(req.count);
    for (let i = 0; i < req.count; i++) {
      const se = squaredError(pred.subarray(i * n, (i + 1) * n), target.subarray(i * n, (i + 1) * n));
      values[i] = psnrOfSquaredError(se, n, PSNR_CAP_DB);
      identical[i] = se === 0 ? 1 : 0;
    }
    return { result: { values, identical }, transfer: [values.buffer, identical.buffer] };
  }
  const perChannel = new Float64Array(3 * req.count);
  for (let i = 0; i < req.count; i++) {
    const r = ssimFrame(pred.subarray(i * n, (i + 1) * n), target.subarray(i * n, (i + 1) * n), req.width, req.height, req.variant);
    values[i] = r.ssim;
    perChannel.set(r.perChannel, 3 * i);
  }
  return { result: { values, perChannel }, transfer: [values.buffer, perChannel.buffer] };
});
