// What the VMM itself needs inside its jail to run: the node binary and the shared libraries it and
// the native addons load, and the packages Node will import, found the way Node finds them. Each is
// bound read-only at its own absolute path, so module resolution, `import.meta` paths and error
// messages inside the jail are the same as outside.
import { spawnSync } from 'node:child_process'
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'

export interface Bind {
  /** The host path (real: no symbolic links). */
  readonly source: string
  /** The path inside the jail. */
  readonly target: string
  readonly readOnly: boolean
  /**
   * Idmapped (the default jail's read-write binds, vmm-jail-idmap.c): the jailed VMM sees files
   * owned by this on-disk uid/gid (the source's owner) as its own, and makes files as them.
   */
  readonly idmap?: { readonly uid: number; readonly gid: number }
}

/** A symbolic link to make inside the jail: at `path`, with the text `target` (as on the host). */
export interface Link {
  readonly path: string
  readonly target: string
}

/**
 * The shared libraries `file` loads, from ldd(1) (glibc's: the loader's own resolution, with
 * /etc/ld.so.cache), each at the path the loader will open, plus the loader itself.
 */
export function sharedLibraries(file: string): string[] {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    // A static executable: ldd says "not a dynamic executable" (status 1).
    if (/not a dynamic executable|statically linked/.test(`${r.stdout}${r.stderr}`)) return []
    throw new Error(
      `vmm jail: cannot list the shared libraries of ${file} with ldd: ${r.error?.message ?? r.stderr.trim()}`,
    )
  }
  const out: string[] = []
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line)
    if (m) out.push(m[1]!)
    else if (/=>\s+not found/.test(line))
      throw new Error(`vmm jail: ${file} needs a library the loader cannot find: ${line.trim()}`)
  }
  return out
}

/** The directory holding the package.json nearest above `file` (the package a module belongs to). */
export function packageRoot(file: string): string | undefined {
  for (let d = dirname(realpathSync(file)); ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d
    if (dirname(d) === d) return undefined
  }
}

interface PackageJson {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
}

/**
 * The packages reachable from `roots` (package directories) through their runtime dependencies,
 * each found as Node's resolver finds it (node_modules/<name> in the package's own directory, then
 * in each directory above it), and the symbolic links passed on the way (pnpm's and npm's
 * workspace links). Returns the real directories and the links; a dependency found nowhere is left
 * out (an optional or peer dependency that is not installed; the VMM says so if it needs it).
 */
export function packageClosure(roots: readonly string[]): { dirs: string[]; links: Link[] } {
  const dirs = new Set<string>()
  const links = new Map<string, Link>()
  const queue = roots.map((r) => realpathSync(r))
  while (queue.length > 0) {
    const dir = queue.pop()!
    if (dirs.has(dir)) continue
    dirs.add(dir)
    let pkg: PackageJson
    try {
      pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
    } catch {
      continue // a plugin file outside any package: nothing more to follow
    }
    const names = new Set([
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.optionalDependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}),
    ])
    for (const name of names) {
      const found = lookupPackage(name, dir)
      if (!found) continue
      for (const l of found.links) links.set(l.path, l)
      queue.push(found.dir)
    }
  }
  return { dirs: [...dirs].sort(), links: [...links.values()] }
}

/**
 * Package `name` as Node's resolver finds it from directory `from`: the first
 * <from or a directory above>/node_modules/<name>, its real directory, and the link it went through.
 */
export function lookupPackage(name: string, from: string): { dir: string; links: Link[] } | undefined {
  for (let d = from; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name)
    try {
      lstatSync(candidate)
    } catch {
      if (dirname(d) === d) return undefined
      continue
    }
    try {
      return { dir: realpathSync(candidate), links: linksAlong(candidate) }
    } catch {
      return undefined // a dangling link: not installed
    }
  }
}

/**
 * The symbolic links met on the way along `path`, as realpath(3) meets them, each at the real
 * place of the directory holding it (so the same link, made there in the jail, leads where it
 * leads on the host): a manifest directory's node_modules linked to a workspace's, then that
 * workspace's node_modules/<name> linked into pnpm's store.
 */
export function linksAlong(path: string): Link[] {
  const out: Link[] = []
  const parts = path.split('/').filter(Boolean)
  let cur = '/'
  for (let hops = 0; parts.length > 0; ) {
    const next = join(cur, parts.shift()!)
    if (!lstatSync(next).isSymbolicLink()) {
      cur = next
      continue
    }
    if (++hops > 40) throw new Error(`vmm jail: too many symbolic links along ${path}`)
    const target = readlinkSync(next)
    out.push({ path: next, target })
    parts.unshift(...(isAbsolute(target) ? target : join(cur, target)).split('/').filter(Boolean))
    cur = '/'
  }
  return out
}

/** The native addons (*.node) a package directory holds where vmm's loader looks (build/Release, prebuilds/*). */
export function nativeAddons(dir: string): string[] {
  const out: string[] = []
  const scan = (d: string) => {
    if (!existsSync(d)) return
    for (const f of readdirSync(d, { withFileTypes: true }))
      if (f.isFile() && f.name.endsWith('.node')) out.push(join(d, f.name))
  }
  scan(join(dir, 'build', 'Release'))
  if (existsSync(join(dir, 'prebuilds')))
    for (const p of readdirSync(join(dir, 'prebuilds'))) scan(join(dir, 'prebuilds', p))
  return out
}

/**
 * What the VMM reads about its host, besides /dev: @vmm/kvm tells a kvm_pvm host (whose guest
 * kernel code is emulated, and which needs the emulation-failure quirks) by /sys/module/kvm_pvm.
 * Only that directory (module parameters) is shown, not /sys.
 */
const HOST_FACTS = ['/sys/module/kvm_pvm']

/**
 * Read-only binds for the node binary, its libraries and those of `addons`, ld.so's cache, and
 * the HOST_FACTS this host has.
 */
export function nodeRuntime(addons: readonly string[]): Bind[] {
  const files = new Set<string>([process.execPath])
  for (const f of [process.execPath, ...addons]) for (const lib of sharedLibraries(f)) files.add(lib)
  for (const f of ['/etc/ld.so.cache', ...HOST_FACTS]) if (existsSync(f)) files.add(f)
  return [...files].map((f) => ({ source: realpathSync(f), target: f, readOnly: true }))
}
