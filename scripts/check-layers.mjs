#!/usr/bin/env node
/**
 * The dependency rule (docs/architecture.md): a module may import only from its own layer or a lower one, and the
 * command areas (prep, train, render, eval) never import each other. Run by `npm run lint`; exits 1 listing every
 * import that breaks the rule. Imports are read from the TypeScript sources (static and dynamic relative imports).
 */
import fs from 'node:fs';
import path from 'node:path';

/** Layers from the bottom up. Same rank = siblings that must not import each other. */
export const LAYERS = [
  ['util'],
  ['weights', 'audio'],
  ['media'],
  ['face'],
  ['dataset'],
  ['models'],
  ['metrics'],
  ['prep', 'train', 'render', 'eval', 'export', 'doctor'],
  ['cli'],
  ['commands'],
];

const rankOf = new Map(LAYERS.flatMap((names, rank) => names.map((n) => [n, rank])));

function layerOf(file, srcDir) {
  const rel = path.relative(srcDir, file).split(path.sep);
  return rel[0];
}

function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;

export function checkLayers(srcDir) {
  const problems = [];
  for (const file of sources(srcDir)) {
    const from = layerOf(file, srcDir);
    const fromRank = rankOf.get(from);
    if (fromRank === undefined) {
      problems.push(`${path.relative(srcDir, file)}: layer '${from}' is not in the layer list`);
      continue;
    }
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2];
      const target = path.resolve(path.dirname(file), spec);
      const to = layerOf(target, srcDir);
      if (to === from) continue;
      const toRank = rankOf.get(to);
      if (toRank === undefined || toRank > fromRank || (toRank === fromRank && to !== from)) {
        problems.push(`${path.relative(srcDir, file)} (${from}) imports ${spec} (${to})`);
      }
    }
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const srcDir = path.resolve(process.argv[2] ?? 'src');
  const problems = checkLayers(srcDir);
  for (const p of problems) console.error(`layer rule: ${p}`);
  if (problems.length) process.exit(1);
  console.log(`layer rule: ${sources(srcDir).length} modules, ${LAYERS.map((l) => l.join('+')).join(' < ')}: ok`);
}
