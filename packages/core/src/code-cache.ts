// A V8 code cache for the single-file bundles `pnpm build` makes (scripts/code-cache.mjs). Node 20
// has no compile cache for ES modules (module.enableCompileCache is Node 22), and compiling core's
// ~700 KB bundle, then compiling each function lazily as a run first calls it, was ~20 ms of every
// `vmm run` here. So the build turns a bundle into a CommonJS-shaped body (`<name>.body.cjs`) and
// a small ES-module facade in its place, with the same named exports; the facade calls
// loadWithCodeCache, which compiles the body as a vm.Script with the cached data of an earlier run
// and, when there was none or V8 refused it (another Node, other flags), writes a new one when the
// process exits: by then it holds every function the run compiled, not only the top level.
//
// Best effort, like the validator cache: a cache that cannot be read or written only means
// compiling from source, as without it. Where: $VMM_CACHE_DIR/code, else $XDG_CACHE_HOME/vmm/code,
// else ~/.cache/vmm/code; VMM_CACHE_DIR=off turns it off.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Script } from 'node:vm'

/** What the build's body expects from its wrapper, in this order. */
const PARAMETERS = [
  'exports',
  'require',
  'module',
  '__filename',
  '__dirname',
  '__vmmImportMetaUrl',
  '__vmmImport',
]

export function codeCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.VMM_CACHE_DIR === 'off') return undefined
  if (env.VMM_CACHE_DIR) return resolve(env.VMM_CACHE_DIR, 'code')
  try {
    return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmm', 'code')
  } catch {
    return undefined // no home directory
  }
}

/** What happened to the cache in this load; for tests and `--timings`-style reports. */
export interface CodeCacheLoad {
  file: string | undefined
  /** 'used': V8 took the cached code; 'written'/'rejected'/'absent' say why it compiled from source. */
  cache: 'used' | 'rejected' | 'absent' | 'off'
}

export const codeCacheLoads: CodeCacheLoad[] = []

/**
 * Runs the body at `bodyUrl` as the module `moduleUrl` (the facade: `import.meta.url`,
 * `__filename` and relative dynamic imports keep meaning what they meant in the bundle) and returns
 * its exports. `dynamicImport` is the facade's own `import()`, so relative specifiers resolve
 * from the facade, as they did from the bundle it replaces; `external` holds the ES modules the
 * facade imported for the body's require() (Node 20 cannot require() an ES module).
 */
export function loadWithCodeCache(
  bodyUrl: URL,
  moduleUrl: string,
  dynamicImport: (specifier: string) => Promise<unknown>,
  external: Record<string, unknown> = {},
  env: NodeJS.ProcessEnv = process.env,
): Record<string, unknown> {
  const bodyFile = fileURLToPath(bodyUrl)
  const source = readFileSync(bodyFile, 'utf8')
  const dir = codeCacheDir(env)
  let cacheFile: string | undefined
  let prefix = ''
  let cachedData: Buffer | undefined
  if (dir !== undefined) {
    // One file per body (its path), named also by what V8's check does not cover (V8 checks its
    // own version, flags and the source length): the body's size and time, Node's version. A
    // rebuilt body's new file replaces the old one when it is written.
    const st = statSync(bodyFile)
    const version = fnv(`${st.size}\0${st.mtimeMs}\0${process.version}\0${process.arch}`)
    prefix = `${basename(bodyFile, '.body.cjs')}-${fnv(bodyFile)}-`
    cacheFile = join(dir, `${prefix}${version}.v8`)
    try {
      cachedData = readFileSync(cacheFile)
    } catch {}
  }
  const script = new Script(`(function (${PARAMETERS.join(', ')}) {${source}\n})`, {
    filename: bodyFile,
    cachedData,
  })
  const record: CodeCacheLoad = {
    file: cacheFile,
    cache:
      cacheFile === undefined
        ? 'off'
        : cachedData === undefined
          ? 'absent'
          : script.cachedDataRejected
            ? 'rejected'
            : 'used',
  }
  codeCacheLoads.push(record)
  if (cacheFile !== undefined && record.cache !== 'used') {
    const target = cacheFile
    process.once('exit', () => {
      try {
        mkdirSync(dirname(target), { recursive: true })
        const tmp = `${target}.${process.pid}.tmp`
        writeFileSync(tmp, script.createCachedData())
        renameSync(tmp, target) // whole or not at all, whatever else runs beside us
        // The caches of this body's earlier builds (or another Node) are ours and stale now.
        for (const f of readdirSync(dirname(target)))
          if (f.startsWith(prefix) && f.endsWith('.v8') && join(dirname(target), f) !== target)
            rmSync(join(dirname(target), f), { force: true })
      } catch {}
    })
  }
  const filename = fileURLToPath(moduleUrl)
  const module = { exports: {} as Record<string, unknown> }
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void
  const nodeRequire = createRequire(moduleUrl)
  const require = (specifier: string) =>
    Object.hasOwn(external, specifier) ? external[specifier] : nodeRequire(specifier)
  wrapper(module.exports, require, module, filename, dirname(filename), moduleUrl, dynamicImport)
  return module.exports
}

function fnv(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return (h >>> 0).toString(16)
}
