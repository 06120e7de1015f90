/**
 * plan: the clips of a prep run, decided before any work: the clip list (HDTF annotations or local inputs, --limit),
 * the split of every clip (on the full list, so the workers of an array job agree) and this worker's part (--shard).
 */
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { readSplitFile, resolveSplits, type Split } from '../dataset/split.js';
import type { ClipSpec } from '../media/types.js';
import { parseHdtfAnnotations, type HdtfSummary } from './annotations.js';
import type { PrepConfig, PrepSource } from './config.js';
import { clipsFromInputs, partitionClips } from './inputs.js';

export interface ClipPlan {
  /** Every clip of the run (all array workers). */
  all: ClipSpec[];
  /** This worker's clips (all of them without --shard). */
  mine: ClipSpec[];
  splitOf: (id: string) => Split;
  splitMethod: string;
  hdtf?: HdtfSummary;
}

/** The run's clips, splits and partition; 'no-clips' when there is nothing to prepare. */
export async function planClips(
  source: PrepSource,
  config: Pick<PrepConfig, 'testFraction' | 'seed' | 'splitFile' | 'allowIdentityLeak'>,
  shard: { index: number; count: number } | undefined,
  onEvent: OnEvent,
): Promise<ClipPlan> {
  const { clips: all, hdtf } = await loadClips(source, onEvent);
  if (all.length === 0) throw new DifftalkError('no-clips', 'no clips to prepare');
  const splitFile = config.splitFile ? await readSplitFile(config.splitFile) : undefined;
  const { splits, method } = resolveSplits(all, {
    testFraction: config.testFraction,
    seed: config.seed,
    splitFile,
    allowIdentityLeak: config.allowIdentityLeak,
  });
  const mine = shard ? partitionClips(all, shard.index, shard.count) : all;
  return { all, mine, splitOf: (id) => splits.get(id) as Split, splitMethod: method, ...(hdtf ? { hdtf } : {}) };
}

async function loadClips(source: PrepSource, onEvent: OnEvent): Promise<{ clips: ClipSpec[]; hdtf?: HdtfSummary }> {
  if (source.kind === 'hdtf') {
    const manifest = await parseHdtfAnnotations(source.dir, { subsets: source.subsets });
    for (const issue of manifest.issues) onEvent({ type: 'log', level: 'debug', message: `annotations: ${JSON.stringify(issue)}` });
    const s = manifest.summary;
    onEvent({
      type: 'log',
      level: 'info',
      message: `annotations: ${s.rows} clip rows, ${s.usable} usable, ${s.unusable} unusable (${
        Object.entries(s.byReason)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none'
      }); ${manifest.issues.length} quirks/issues recorded`,
    });
    let clips = manifest.clips;
    if (source.limit !== undefined) clips = takeUsable(clips, source.limit);
    return { clips, hdtf: s };
  }
  let clips = await clipsFromInputs(source.paths, { cropRatio: source.cropRatio });
  if (source.limit !== undefined) clips = clips.slice(0, source.limit);
  return { clips };
}

/** The first `limit` usable clips (file order); unusable rows before them are kept so their drop reasons are recorded. */
function takeUsable(clips: ClipSpec[], limit: number): ClipSpec[] {
  const out: ClipSpec[] = [];
  let usable = 0;
  for (const c of clips) {
    if (!c.unusable) {
      if (usable >= limit) break;
      usable++;
    }
    out.push(c);
  }
  return out;
}
