// Builds the native addon with node-gyp against the headers of the Node.js that runs this script
// when they are installed next to it (Debian's nodejs, or an official tarball), so the build needs
// no download; otherwise node-gyp falls back to its usual header download.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
const prefix = dirname(dirname(process.execPath))
const args = [require.resolve('node-gyp/bin/node-gyp.js'), 'rebuild']
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`)
const r = spawnSync(process.execPath, args, {
  stdio: 'inherit',
  cwd: join(dirname(new URL(import.meta.url).pathname), '..'),
})
process.exit(r.status ?? 1)
