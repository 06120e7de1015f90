import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { fetchWeights, listWeightKinds, type FetchResult } from '../../models/weights-store.js';
import '../../models/syncnet-weights.js'; // registers the syncnet-v2 converter
import '../../models/inception.js'; // registers the fid-inception converter
import '../../models/i3d.js'; // registers the i3d converter (FVD)
import '../../models/vq-f4.js'; // registers the vq-f4 converter
import '../../models/s3fd.js'; // registers the s3fd converter
import '../../models/deepspeech.js'; // registers the deepspeech kind (DeepSpeech 0.1.0 frozen graph)

const MB = 1e6;

export default class WeightsFetch extends BaseCommand {
  static override summary = 'Download model weights from their official URLs, verify them and import them into the weights cache.';
  static override description =
    'Resumable (a rerun continues an interrupted download with an HTTP Range request), size-capped, and checked against ' +
    'the sha256 that upstream publishes (torchvision: the hash prefix in the file name). A file without a published ' +
    'hash is kept and labelled "unverified file <sha256[:12]>". Kinds: ' +
    listWeightKinds()
      .map((k) => k.kind)
      .join(', ') +
    '.';

  static override examples = ['<%= config.bin %> weights fetch lpips-alex', '<%= config.bin %> weights fetch syncnet-v2 --cache-dir /data/weights'];

  static override args = {
    kind: Args.string({ description: 'Weight kind.', required: true }),
  };

  static override flags = {
    'cache-dir': Flags.directory({ summary: 'Weights cache folder (default $DIFFTALK_CACHE/weights or ~/.cache/difftalk/weights).' }),
    mirror: Flags.string({ summary: 'Base URL of a mirror holding the files under their upstream names (instead of the official URLs).' }),
  };

  async run(): Promise<FetchResult> {
    const { args, flags } = await this.parse(WeightsFetch);
    const result = await fetchWeights(args.kind, { cacheDir: flags['cache-dir'], mirror: flags.mirror, onEvent: this.events(flags['log-level']) });
    for (const d of result.downloads) {
      this.log(
        `${d.file}: ${(d.bytes / MB).toFixed(1)} MB from ${d.url}${d.resumedFrom ? ` (resumed at ${d.resumedFrom} bytes)` : ''}, sha256 ${d.sha256} (${d.verified === 'unverified' ? 'no published hash' : `matches the published ${d.verified}`})`,
      );
    }
    if (result.imported) this.log(`stored ${result.kind}: ${result.imported.path}`);
    else this.log(`${result.kind}: downloaded and verified only (difftalk does not implement this network yet)`);
    this.log(`  label: ${result.label}`);
    return result;
  }
}
