// Where `vmm jail`'s native helper is: vmm-jail (src/native/vmm-jail.c), an executable node-gyp
// builds beside the addon (binding.gyp's second target) and the packed package ships in
// prebuilds/<platform>-<arch>/ (scripts/prebuild.mjs), looked for in the addon's order.
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { addonHelp } from './addon.js'

/** The vmm-jail executable, or an error that says how to build it. */
export function jailHelperPath(): string {
  const dir = fileURLToPath(new URL('..', import.meta.url))
  const candidates = [
    join(dir, 'build', 'Release', 'vmm-jail'),
    join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'vmm-jail'),
  ]
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {}
  }
  throw new Error(
    `@vmm/host: the jail helper vmm-jail is not built (looked for ${candidates.join(', ')}); ${addonHelp('@vmm/host')}`,
  )
}
