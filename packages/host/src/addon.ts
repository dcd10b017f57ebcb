// Finds and loads a vmm native addon (@vmm/host's and @vmm/kvm's), shipped as a prebuilt binary or
// built from source. The order is the one node-gyp-build uses: a local build (the fallback, or a
// developer's `build:native`) wins over the prebuilt binary the package ships, so a rebuilt addon is
// never shadowed by an older prebuilt one. Both are N-API (NAPI_VERSION 8 in binding.gyp), so one
// binary per platform and architecture serves every Node.js release, which is why the prebuilt
// path needs no ABI tag in its name. See scripts/install.mjs for the install side.
import { createRequire } from 'node:module'
import { join } from 'node:path'

/** The places a package's addon `target` (binding.gyp target_name) is looked for, in order. */
export function addonCandidates(packageDir: string, target: string): string[] {
  return [
    join(packageDir, 'build', 'Release', `${target}.node`),
    join(packageDir, 'prebuilds', `${process.platform}-${process.arch}`, `${target}.node`),
  ]
}

/** How to get a working addon, for error messages (install time and run time say the same). */
export function addonHelp(packageName: string): string {
  return (
    `build it from source: \`npm rebuild ${packageName} --foreground-scripts\` (npm 11 runs install ` +
    `scripts only once they are allowed: \`npm install-scripts approve ${packageName}\` first; ` +
    '`VMM_BUILD_FROM_SOURCE=1` skips the prebuilt binary; in the vmm repository `pnpm --filter ' +
    `${packageName} build:native\`). That needs python3, make and a C++20 compiler (g++ 10 or later), ` +
    'and the Node.js headers (installed beside node, or downloaded by node-gyp): on Debian/Ubuntu ' +
    '`apt-get install python3 make g++`'
  )
}

/**
 * Loads the first candidate that loads, or throws an error that says, for each candidate, why not
 * and what to do about it.
 */
export function loadAddon<T>(packageName: string, packageDir: string, target: string): T {
  const require = createRequire(join(packageDir, 'package.json'))
  const failures: string[] = []
  for (const file of addonCandidates(packageDir, target)) {
    try {
      return require(file) as T
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      const why = err.code === 'MODULE_NOT_FOUND' ? 'not there' : (err.message.split('\n')[0] ?? String(e))
      failures.push(`${file.slice(packageDir.length + 1)}: ${why}`)
    }
  }
  throw new Error(
    `${packageName}: no native module loads here (${process.platform}-${process.arch}, Node.js ${process.version}; ` +
      `${failures.join('; ')}). Prebuilt binaries ship for linux-x64 (glibc); elsewhere, or when the ` +
      `prebuilt one cannot load, ${addonHelp(packageName)}`,
  )
}
