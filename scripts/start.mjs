// `pnpm start`: the README's main job. Builds the default guest unless it is cached (the kernel
// build takes about five minutes on two cores, with a progress display), links it where
// examples/micro.yaml expects it, and boots it with `vmm run`, passing on its exit code.
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findDefaultGuest, linkDefaultGuest, runImageCommand } from '@vmm/image'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const manifest = process.argv[2] ?? join(root, 'examples', 'micro.yaml')

const built = await runImageCommand(['build'], { out: process.stderr, err: process.stderr })
if (built !== 0) process.exit(built)
const guest = await findDefaultGuest()
if (!guest) {
  console.error('start: the default guest was built but cannot be found in the cache')
  process.exit(1)
}
linkDefaultGuest(guest, join(dirname(manifest), '.guest'))
const r = spawnSync(process.execPath, [join(root, 'packages/cli/dist/main.js'), 'run', manifest], {
  stdio: 'inherit',
})
process.exit(r.status ?? 1)
