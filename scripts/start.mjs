// `pnpm start`: the README's main job. Builds the default guest unless it is cached (the kernel
// build takes about five minutes on two cores, with a progress display), links it where
// examples/micro.yaml expects it, and boots it with `vmm run`, passing on its exit code.
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, symlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findDefaultGuest, runImageCommand } from '@vmm/image'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const manifest = process.argv[2] ?? join(root, 'examples', 'micro.yaml')

const built = await runImageCommand(['build'], { out: process.stderr, err: process.stderr })
if (built !== 0) process.exit(built)
const guest = await findDefaultGuest()
if (!guest) {
  console.error('start: the default guest was built but cannot be found in the cache')
  process.exit(1)
}
const dir = join(dirname(manifest), '.guest')
mkdirSync(dir, { recursive: true })
for (const [name, target] of [
  ['vmlinux', guest.vmlinux],
  ['bzImage', guest.bzImage],
  ['initramfs.cpio.gz', guest.initramfs],
]) {
  rmSync(join(dir, name), { force: true })
  symlinkSync(target, join(dir, name))
}
const r = spawnSync(process.execPath, [join(root, 'packages/core/dist/cli/main.js'), 'run', manifest], {
  stdio: 'inherit',
})
process.exit(r.status ?? 1)
