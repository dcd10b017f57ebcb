// Shared by seccomp.test.ts and seccomp.kvm.test.ts: the hostile plugin's machine and a vmm runner.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const plugin = fileURLToPath(new URL('./fixtures/spawn-plugin.mjs', import.meta.url))

/** A guest that writes to the hostile device's port 0xf0, then "ok" to the debug console, then halts. */
export const spawnGuest = Uint8Array.of(0xe6, 0xf0, 0xb0, 0x6f, 0xe6, 0xe9, 0xb0, 0x6b, 0xe6, 0xe9, 0xf4)
export const spawnMachine = (memory: string) =>
  `plugins: [${JSON.stringify(plugin)}]\nmachine:\n  memory: ${memory}\ncomponents:\n  g:\n    type: raw-image\n    file: g.bin\n    address: 0x1000\n` +
  '  con:\n    type: debugcon\n    resources: { port: 0xe9 }\n  hostile:\n    type: spawn-on-write\n    resources: { port: 0xf0 }\n'

export function runVmm(args: string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}
