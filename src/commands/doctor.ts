import { BaseCommand } from '../cli/base-command.js';
import { runDoctor, type DoctorReport } from '../doctor/index.js';

const MARK = { ok: 'ok  ', warn: 'warn', missing: 'MISS' } as const;

export default class Doctor extends BaseCommand {
  static override summary = 'Check what each part of difftalk needs and has here; print the exact fix for each missing piece.';
  static override description =
    'node, ffmpeg/ffprobe (version, the encoders difftalk uses), yt-dlp (and whether it is too old for YouTube), Chromium, ' +
    'the face model cache, each TensorFlow.js backend (WebGPU: adapter and features), onnxruntime-node, the weights cache ' +
    'and free disk. Exit 0 when nothing required is missing (warnings are optional parts), 1 otherwise.';

  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json'];

  async run(): Promise<DoctorReport> {
    await this.parse(Doctor);
    const report = await runDoctor();
    if (!this.jsonEnabled()) {
      for (const c of report.checks) {
        this.log(`${MARK[c.status]}  ${c.name}: ${c.detail}`);
        if (c.fix) this.log(`      fix: ${c.fix}`);
      }
      this.log(report.ok ? 'everything required is present' : 'something required is missing (MISS): see the fixes above');
    }
    if (!report.ok) process.exitCode = 1;
    return report;
  }
}
