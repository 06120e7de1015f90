import { Command, Flags, Errors } from '@oclif/core';
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { barRenderer, DEFAULT_LOG_EVERY, jsonLinesRenderer, type Renderer } from './progress.js';

/**
 * Every difftalk command extends this. `run()` returns a JSON-safe result; --json prints it (oclif),
 * and progress events become bars (TTY), plain lines (logs) or JSON lines on stderr (--json).
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    'log-level': Flags.option({ options: ['info', 'debug'] as const, default: 'info', helpGroup: 'GLOBAL', summary: 'Verbosity of progress output.' })(),
  };

  private renderer?: Renderer;

  /** The event sink to hand to library code; a training stage logs one line / JSON event every `logEvery` steps off a TTY. */
  protected events(logLevel: 'info' | 'debug' = 'info', logEvery = DEFAULT_LOG_EVERY): OnEvent {
    if (!this.renderer) this.renderer = this.jsonEnabled() ? jsonLinesRenderer(process.stderr, logEvery) : barRenderer(process.stderr, logLevel, logEvery);
    return this.renderer.onEvent;
  }

  /** Human-readable lines: stdout normally; stderr under --json, so stdout stays one JSON document. */
  public override log(message = '', ...args: unknown[]): void {
    if (this.jsonEnabled()) this.logToStderr(message, ...args);
    else super.log(message, ...args);
  }

  protected override async finally(err: Error | undefined): Promise<unknown> {
    this.renderer?.stop();
    return super.finally(err);
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<unknown> {
    this.renderer?.stop();
    if (err instanceof DifftalkError) {
      // exit 2 for a user-fixable error, with and without --json (oclif's --json path reads `exitCode`).
      const e = Object.assign(new Errors.CLIError(err.message, { exit: 2, code: err.code, suggestions: err.suggestion ? [err.suggestion] : undefined }), {
        exitCode: 2,
      });
      return super.catch(e);
    }
    return super.catch(err);
  }
}
