/**
 * Optional WGSL language features for the kernels: which ones the device has, and how a kernel's code asks for one.
 *
 * tfjs-backend-webgpu assembles each shader as its own prelude followed by the program's code, so a program cannot
 * put an `enable …;` directive first, where WGSL requires it. `hoistEnableDirectives` wraps the device's
 * `createShaderModule` once: every `enable name;` line anywhere in the code moves to the top (deduplicated). A kernel
 * that uses subgroup operations writes `enable subgroups;` in its user code and is only chosen when
 * `subgroupsWanted()` says so: the device has the `subgroups` feature and `DIFFTALK_WEBGPU_SUBGROUPS` (or
 * `useSubgroups(false)`) does not force the plain variant (the tests run both).
 */
import { gpuDevice } from '../../util/tf.js';

const HOISTED = Symbol('difftalk.hoistEnableDirectives');
const ENABLE = /^[ \t]*enable[ \t]+[A-Za-z_][A-Za-z0-9_, \t]*;[ \t]*$/gm;

/** Move every `enable …;` line of a WGSL source to its start (once each, in first-seen order). */
export function hoistEnables(code: string): string {
  const found = code.match(ENABLE);
  if (!found) return code;
  const unique = [...new Set(found.map((l) => l.trim()))];
  return `${unique.join('\n')}\n${code.replace(ENABLE, '')}`;
}

/** Wrap `device.createShaderModule` so that programs may carry their own `enable` directives (idempotent). */
export function hoistEnableDirectives(device: GPUDevice): void {
  const d = device as GPUDevice & { [HOISTED]?: true };
  if (d[HOISTED]) return;
  const create = device.createShaderModule.bind(device);
  d.createShaderModule = (desc: GPUShaderModuleDescriptor) => create({ ...desc, code: hoistEnables(desc.code) });
  d[HOISTED] = true;
}

let forcedOff = /^(off|0|false|no)$/i.test(process.env.DIFFTALK_WEBGPU_SUBGROUPS ?? '');

/** Allow (true) or forbid (false) the subgroup variants; returns whether they will be used on this device. */
export function useSubgroups(on: boolean): boolean {
  forcedOff = !on;
  return subgroupsWanted();
}

/** Whether kernels should pick their subgroup variant: the device has `subgroups` and nothing forces the fallback. */
export function subgroupsWanted(): boolean {
  if (forcedOff) return false;
  return gpuDevice()?.features.has('subgroups') ?? false;
}
