import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { DifftalkError } from '../../util/errors.js';
import { importWeights, listWeightKinds, weightsDir, type ImportResult } from '../../models/weights-store.js';
import '../../models/syncnet-weights.js'; // registers the syncnet-v2 converter
import '../../models/inception.js'; // registers the fid-inception converter
import '../../models/i3d.js'; // registers the i3d converter (FVD)
import '../../models/vq-f4.js'; // registers the vq-f4 converter
import '../../models/s3fd.js'; // registers the s3fd converter
import '../../models/deepspeech.js'; // registers the deepspeech kind (DeepSpeech 0.1.0 frozen graph)

export default class WeightsImport extends BaseCommand {
  static override summary = 'Verify, convert and cache model weights (PyTorch .pth/.pt/.ckpt → safetensors).';
  static override description =
    'Reads the PyTorch files without Python, checks them against known sha256 hashes (or the sha256 prefix in torchvision ' +
    'file names), converts them to safetensors in the weights cache ($DIFFTALK_CACHE/weights or ~/.cache/difftalk/weights) ' +
    'and records source and converted hashes in index.json. Kinds: ' +
    listWeightKinds()
      .map((k) => k.kind)
      .join(', ') +
    '.';

  static override examples = [
    '<%= config.bin %> weights import --kind lpips-alex --backbone alexnet-owt-7be5be79.pth --linear alex.pth',
    '<%= config.bin %> weights import --kind lpips-vgg --backbone vgg16-397923af.pth --linear vgg.pth --json',
  ];

  static override flags = {
    kind: Flags.string({
      summary: `Weight kind (${listWeightKinds()
        .map((k) => k.kind)
        .join(', ')}).`,
      required: true,
    }),
    backbone: Flags.file({ summary: 'lpips-*: torchvision ImageNet checkpoint (alexnet-owt-7be5be79.pth / vgg16-397923af.pth).' }),
    linear: Flags.file({ summary: 'lpips-*: LPIPS v0.1 linear layers (alex.pth / vgg.pth from lpips/weights/v0.1).' }),
    model: Flags.file({ summary: 'Single-file kinds (syncnet-v2, fid-inception, i3d, vq-f4, s3fd): the checkpoint.' }),
    source: Flags.string({ summary: 'Any other input of a kind as name=path (repeatable).', multiple: true }),
    'cache-dir': Flags.directory({ summary: 'Weights cache folder (default $DIFFTALK_CACHE/weights or ~/.cache/difftalk/weights).' }),
  };

  async run(): Promise<ImportResult> {
    const { flags } = await this.parse(WeightsImport);
    const inputs: Record<string, string> = {};
    for (const k of ['backbone', 'linear', 'model'] as const) if (flags[k]) inputs[k] = flags[k];
    for (const s of flags.source ?? []) {
      const eq = s.indexOf('=');
      if (eq <= 0) throw new DifftalkError('bad-flag', `--source must be name=path, got ${s}`);
      inputs[s.slice(0, eq)] = s.slice(eq + 1);
    }
    const result = await importWeights(flags.kind, inputs, { cacheDir: flags['cache-dir'], onEvent: this.events(flags['log-level']) });
    this.log(`stored ${result.kind}: ${result.path}`);
    this.log(
      `  ${result.tensors} tensors, ${result.parameters.toLocaleString('en-US')} parameters, ${(result.bytes / 1e6).toFixed(1)} MB, sha256 ${result.sha256}`,
    );
    for (const s of result.sources)
      this.log(`  from --${s.flag} ${s.path} (sha256 ${s.sha256}, ${s.verified === 'unverified' ? 'no known hash' : `verified by ${s.verified}`})`);
    this.log(`  index: ${weightsDir(flags['cache-dir'])}/index.json`);
    return result;
  }
}
