// The install step of a vmm native addon (this file is the same in @vmm/kvm and @vmm/host;
// test/native-install.test.ts checks that). In order:
//  1. The package ships a prebuilt binary, prebuilds/<platform>-<arch>/<target>.node (linux-x64,
//     put there by scripts/prebuild.mjs when the package is packed). If it loads here, there is
//     nothing to do: no compiler, no download. The same binary is what src/native.ts loads at run
//     time, so a package manager that does not run install scripts (npm --ignore-scripts, pnpm's
//     and newer npm's script approval) gets a working package too.
//  2. Otherwise build from source with node-gyp, against the headers of the Node.js running this
//     script when they are installed beside it (so no download), else node-gyp downloads them.
//  3. If that cannot work, say what is missing and how to get it, and fail the install, so npm
//     shows the message (it hides the output of install scripts that succeed).
// `--from-source` (`npm run build:native`) or VMM_BUILD_FROM_SOURCE=1 skips step 1. On a system
// other than Linux there is no /dev/kvm to use: a note, no build, and the install succeeds, so a
// plugin author on another system can still install the packages and use the test hypervisor.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('..', import.meta.url))
const { name } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
const target = JSON.parse(readFileSync(join(dir, 'binding.gyp'), 'utf8')).targets[0].target_name
const require = createRequire(join(dir, 'package.json'))
const platform = `${process.platform}-${process.arch}`
const fromSource =
  process.argv.includes('--from-source') ||
  /^(1|true)$/.test(process.env.VMM_BUILD_FROM_SOURCE ?? process.env.npm_config_build_from_source ?? '')
const help =
  `Then run \`npm rebuild ${name} --foreground-scripts\` (npm 11: once \`npm install-scripts approve ${name}\` ` +
  'allows it). Or use the in-process test hypervisor ' +
  '(`vmm run --hypervisor test`), which needs no native code.'

function fail(what) {
  process.stderr.write(
    `\n${name}: cannot install the native module ${target}.node for ${platform}: ${what}\n${help}\n\n`,
  )
  process.exit(1)
}

if (!fromSource) {
  const prebuilt = join(dir, 'prebuilds', platform, `${target}.node`)
  if (existsSync(prebuilt)) {
    try {
      require(prebuilt)
      process.exit(0)
    } catch (e) {
      process.stderr.write(
        `${name}: the prebuilt ${platform} binary does not load here (${e.message.split('\n')[0]}); building from source\n`,
      )
    }
  }
}

if (process.platform !== 'linux') {
  process.stderr.write(`${name}: nothing built on ${process.platform}: the native module is for Linux only\n`)
  process.exit(0)
}

/** The first of `names` found on PATH (or an absolute path that exists). */
function which(...names) {
  for (const n of names) {
    if (n.includes('/')) {
      if (existsSync(n)) return n
      continue
    }
    for (const d of (process.env.PATH ?? '').split(delimiter))
      if (d !== '' && existsSync(join(d, n))) return join(d, n)
  }
  return undefined
}

// What node-gyp needs; checked first, because its own errors for a missing tool are hard to read.
const missing = []
if (!which(process.env.PYTHON ?? 'python3', 'python3', 'python')) missing.push('python3')
if (!which('make')) missing.push('make')
// gyp's make generator compiles with $CXX, else g++.
if (!which(process.env.CXX ?? 'g++')) missing.push(`a C++20 compiler (${process.env.CXX ?? 'g++'})`)
if (missing.length > 0) {
  fail(
    `there is no prebuilt binary that loads here, and building from source needs ${missing.join(', ')}, ` +
      'not found on PATH. Install them (Debian/Ubuntu: `apt-get install python3 make g++`; Fedora: ' +
      '`dnf install python3 make gcc-c++`; Alpine: `apk add python3 make g++`).',
  )
}

// node-gyp: a project's own (the vmm repository has it), else the one npm ships and names to
// install scripts in npm_config_node_gyp, else one on PATH.
let nodeGyp
try {
  nodeGyp = require.resolve('node-gyp/bin/node-gyp.js')
} catch {
  nodeGyp = process.env.npm_config_node_gyp ?? which('node-gyp')
}
if (nodeGyp === undefined || !existsSync(nodeGyp))
  fail('node-gyp is not found (npm ships it; elsewhere `npm install -g node-gyp`).')

const prefix = dirname(dirname(process.execPath))
const args = [nodeGyp, 'rebuild']
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`)
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: dir })
if (r.status !== 0)
  fail(
    `node-gyp rebuild failed (${r.error?.message ?? `exit status ${r.status}`}; its output is above). ` +
      'It needs python3, make, a C++20 compiler (g++ 10 or later) and the Node.js headers, which it ' +
      'downloads from nodejs.org unless they are installed beside node (Debian: `apt-get install nodejs-dev`' +
      ' or `libnode-dev`).',
  )
