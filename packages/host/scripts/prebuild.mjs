// `prepack`: puts the addon into prebuilds/<platform>-<arch>/<target>.node, the prebuilt binary the
// packed package ships (scripts/install.mjs and src/native.ts look for it there). It is the local
// build (build/Release), rebuilt first when a native source or binding.gyp is newer, with its
// symbols stripped. Released packages are packed on linux-x64; the binary needs only the glibc
// symbols the build machine's compiler picked (Debian 12 here; `objdump -T` lists them), and a
// machine where it does not load builds from source at install time.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('..', import.meta.url))
const targets = JSON.parse(readFileSync(join(dir, 'binding.gyp'), 'utf8')).targets
const target = targets[0].target_name
// Executables built beside the addon (@vmm/host's vmm-jail helper) ship the same way.
const executables = targets.filter((t) => t.type === 'executable').map((t) => t.target_name)
const built = join(dir, 'build', 'Release', `${target}.node`)
const sources = [
  join(dir, 'binding.gyp'),
  ...readdirSync(join(dir, 'src', 'native')).map((f) => join(dir, 'src', 'native', f)),
]
const stale =
  !existsSync(built) ||
  executables.some((e) => !existsSync(join(dir, 'build', 'Release', e))) ||
  sources.some((f) => statSync(f).mtimeMs > statSync(built).mtimeMs)
if (stale) {
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'install.mjs'), '--from-source'], {
    stdio: 'inherit',
    cwd: dir,
  })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
const outDir = join(dir, 'prebuilds', `${process.platform}-${process.arch}`)
mkdirSync(outDir, { recursive: true })
for (const [from, name] of [
  [built, `${target}.node`],
  ...executables.map((e) => [join(dir, 'build', 'Release', e), e]),
]) {
  const out = join(outDir, name)
  copyFileSync(from, out)
  const strip = spawnSync('strip', ['--strip-unneeded', out], { stdio: 'inherit' })
  if (strip.error) process.stderr.write(`prebuild: ${name} not stripped (${strip.error.message})\n`)
}
