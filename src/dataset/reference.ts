/**
 * reference: pick the reference frame (identity/appearance condition) for every frame of a clip.
 *
 * DiffTalk's rule (ldm/data/talk_data_ref_smooth.py, docs §1.3), 1-based: for frame f of an N-frame video the
 * reference is drawn uniformly from {1..N-1} \ {f-60..f+59}. In 0-based indices (f0 = f-1, r0 = r-1):
 *
 *     r0 ∈ [0, N-2]  and  (r0 <= f0 - 61  or  r0 >= f0 + 60)
 *
 * The window is asymmetric and the last frame (N-1) is never a reference. Every frame has a candidate iff N >= 122.
 *
 * Randomness: one sfc32 generator per clip, seeded from sha256(`difftalk-reference:<seed>:<clipId>`), so the
 * result depends only on (seed, clipId, N) and never on which clips were processed before or in which order.
 */
import { createHash } from 'node:crypto';
import { DifftalkError } from '../util/errors.js';
import { drop, ok, type StageResult } from '../util/result.js';

/** What to do when a frame has no candidate reference (short clips). */
export type NoCandidatePolicy = 'drop-clip' | 'farthest';

/** A reference-frame sampler: deterministic for a given (clipId, frameCount). */
export interface ReferenceSampler {
  readonly name: string;
  /** Everything that determines the output; recorded as the `difftalk.reference` shard metadata. */
  readonly params: ReferenceParams;
  /** One reference index (0-based, same clip) per frame, or a drop when the clip cannot be served. */
  sample(clipId: string, frameCount: number): StageResult<Int32Array>;
}

/** Recorded in the Arrow schema metadata `difftalk.reference` and in dataset.json. */
export interface ReferenceParams {
  sampler: string;
  seed: number;
  /** 0-based: the reference must be <= f - before or >= f + after. */
  min_gap: { before: number; after: number };
  /** Whether the last frame of the clip may be a reference (DiffTalk: no). */
  last_frame_allowed: boolean;
  policy: NoCandidatePolicy;
}

/** r0 <= f0 - DIFFTALK_GAP_BEFORE is allowed. */
export const DIFFTALK_GAP_BEFORE = 61;
/** r0 >= f0 + DIFFTALK_GAP_AFTER is allowed. */
export const DIFFTALK_GAP_AFTER = 60;
/** The smallest clip length for which every frame has a candidate under DiffTalk's rule. */
export const DIFFTALK_MIN_FRAMES = DIFFTALK_GAP_BEFORE + DIFFTALK_GAP_AFTER + 1; // 122: no frame f0 in [N-61, 60]

/** Number of candidates before and after frame f0 (0-based) of an N-frame clip under DiffTalk's rule. */
export function referenceCandidates(f0: number, frameCount: number): { before: number; after: number } {
  const last = frameCount - 2; // highest allowed reference
  const before = Math.max(0, Math.min(f0 - DIFFTALK_GAP_BEFORE, last) + 1);
  const after = Math.max(0, last - (f0 + DIFFTALK_GAP_AFTER) + 1);
  return { before, after };
}

/** True when r0 is an allowed reference for f0 in an N-frame clip (DiffTalk's rule, 0-based). */
export function isDifftalkReference(f0: number, r0: number, frameCount: number): boolean {
  return Number.isInteger(r0) && r0 >= 0 && r0 <= frameCount - 2 && (r0 <= f0 - DIFFTALK_GAP_BEFORE || r0 >= f0 + DIFFTALK_GAP_AFTER);
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counter, 32-bit), seeded with the first 16 bytes of
 * sha256(key). Returns uniform floats in [0, 1) with 32 bits of resolution.
 */
export function seededRandom(key: string): () => number {
  const h = createHash('sha256').update(key).digest();
  let a = h.readUInt32LE(0);
  let b = h.readUInt32LE(4);
  let c = h.readUInt32LE(8);
  let d = h.readUInt32LE(12);
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  // Discard the first outputs (standard sfc32 warm-up) so nearby keys decorrelate.
  for (let i = 0; i < 12; i++) next();
  return next;
}

/** The per-clip generator used by the DiffTalk sampler. */
export function clipRandom(seed: number, clipId: string): () => number {
  return seededRandom(`difftalk-reference:${seed}:${clipId}`);
}

/**
 * DiffTalk's reference sampler. `seed` defaults to 23 (DiffTalk's seed_everything(23); the values differ from
 * python's RNG, only the rule and the distribution are the same). `policy` (default 'drop-clip') decides what
 * happens to clips shorter than DIFFTALK_MIN_FRAMES:
 * - 'drop-clip': the clip is dropped with reason 'too-short';
 * - 'farthest': frames without a candidate get the allowed frame (0..N-2) farthest from them (ties → the lower
 *   index); frames that do have candidates are still sampled by the rule. A 1-frame clip references itself.
 */
export function difftalkReferenceSampler(opts: { seed?: number; policy?: NoCandidatePolicy } = {}): ReferenceSampler {
  const seed = opts.seed ?? 23;
  const policy = opts.policy ?? 'drop-clip';
  if (!Number.isSafeInteger(seed)) throw new DifftalkError('bad-argument', `reference seed ${seed} must be an integer`);
  if (policy !== 'drop-clip' && policy !== 'farthest') {
    throw new DifftalkError('bad-argument', `unknown reference policy '${String(policy)}'`, {
      suggestion: "use 'drop-clip' or 'farthest'",
    });
  }
  const params: ReferenceParams = {
    sampler: 'difftalk',
    seed,
    min_gap: { before: DIFFTALK_GAP_BEFORE, after: DIFFTALK_GAP_AFTER },
    last_frame_allowed: false,
    policy,
  };
  return {
    name: 'difftalk',
    params,
    sample(clipId: string, frameCount: number): StageResult<Int32Array> {
      if (!Number.isInteger(frameCount) || frameCount < 1) {
        return drop('too-short', `clip ${clipId} has ${frameCount} frames; a reference needs at least one frame`);
      }
      if (frameCount < DIFFTALK_MIN_FRAMES && policy === 'drop-clip') {
        return drop(
          'too-short',
          `clip ${clipId} has ${frameCount} frames; DiffTalk's reference rule needs at least ${DIFFTALK_MIN_FRAMES} ` +
            `(reference at least 61 frames before or 60 after, never the last frame)`,
        );
      }
      const rand = clipRandom(seed, clipId);
      const refs = new Int32Array(frameCount);
      const last = Math.max(0, frameCount - 2);
      for (let f = 0; f < frameCount; f++) {
        const { before, after } = referenceCandidates(f, frameCount);
        const total = before + after;
        if (total === 0) {
          // only reachable with policy 'farthest'
          refs[f] = f >= last - f ? 0 : last;
          continue;
        }
        // floor(u·total) with u of 32-bit resolution: bias at most total/2^32 (< 4e-7 for 1500 frames).
        const k = Math.min(total - 1, Math.floor(rand() * total));
        refs[f] = k < before ? k : f + DIFFTALK_GAP_AFTER + (k - before);
      }
      return ok(refs);
    },
  };
}
