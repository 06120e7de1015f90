/**
 * Every difftalk command in README.md's shell blocks names a real command and only its real flags, with the
 * required flags present, option values allowed and no stray arguments (checked against the built CLI's oclif
 * command definitions, without running the commands). Output folders of the examples are git-ignored.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { Config } from '@oclif/core';
import { runProcess } from '../src/util/exec.js';
import { ROOT } from './helpers.js';

/** The difftalk command lines of README's ```sh blocks, as token lists after `difftalk`/`npx difftalk`/`./bin/run.js`. */
function readmeCommands(): string[][] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const out: string[][] = [];
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.split('\n')) {
      for (const part of line.replace(/#.*$/, '').split('&&')) {
        const tokens = part.trim().split(/\s+/).filter(Boolean);
        const at = tokens.findIndex((t) => t === 'difftalk' || t === './bin/run.js');
        if (at >= 0 && (at === 0 || tokens[at - 1] === 'npx')) out.push(tokens.slice(at + 1));
      }
    }
  }
  return out;
}

test('README: every difftalk command parses against the CLI definitions', async () => {
  const config = await Config.load(ROOT);
  const commands = readmeCommands();
  assert.ok(commands.length >= 10, `found ${commands.length} commands`);
  for (const argv of commands) {
    const words = argv.filter((t) => !t.startsWith('-'));
    let id = '';
    for (let n = words.length; n > 0 && !id; n--) {
      const candidate = words.slice(0, n).join(':');
      if (config.findCommand(candidate)) id = candidate;
    }
    assert.ok(id, `no command for: difftalk ${argv.join(' ')}`);
    const cmd = config.findCommand(id)!;
    const rest = argv.slice(id.split(':').length);
    const positional: string[] = [];
    const given = new Set<string>();
    for (let i = 0; i < rest.length; i++) {
      const t = rest[i]!;
      if (!t.startsWith('-')) {
        positional.push(t);
        continue;
      }
      const name = t.replace(/^-+/, '').split('=')[0]!;
      const flag = Object.entries(cmd.flags).find(([k, f]) => k === name || (t.length === 2 && f.char === name));
      assert.ok(flag, `difftalk ${id}: unknown flag ${t}`);
      const [key, def] = flag;
      given.add(key);
      if (def.type === 'option' && !t.includes('=')) {
        const value = rest[++i];
        assert.ok(value !== undefined && !value.startsWith('-'), `difftalk ${id}: ${t} needs a value`);
        if (def.options) for (const v of def.multiple ? [value] : value.split(',').slice(0, 1)) assert.ok(def.options.includes(v), `${t} ${v}`);
      }
    }
    for (const [k, f] of Object.entries(cmd.flags)) if (f.required) assert.ok(given.has(k), `difftalk ${id} ${rest.join(' ')}: --${k} is required`);
    const argDefs = Object.values(cmd.args);
    if (cmd.strict !== false) assert.ok(positional.length <= argDefs.length, `difftalk ${id}: unexpected arguments ${positional.join(' ')}`);
    argDefs.forEach((a, i) => assert.ok(!a.required || positional[i] !== undefined, `difftalk ${id}: argument ${a.name} is required`));
  }
});

test('README: the output folders of its examples are git-ignored', async () => {
  for (const p of ['data/hdtf/x', 'data/hdtf256/x', 'runs/vq/x', 'reports/run1/x', 'out/aoc/x', 'talking.mp4']) {
    const r = await runProcess('git', ['check-ignore', '-q', p], { cwd: ROOT }).then(
      () => 0,
      () => 1,
    );
    assert.equal(r, 0, `${p} is not git-ignored`);
  }
});
