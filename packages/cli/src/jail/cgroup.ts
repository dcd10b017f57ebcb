// The jail's cgroups (cgroups(7)). Each limit goes to the hierarchy that has its controller: a
// cgroup v1 hierarchy the controller is bound to (our machines: memory, pids, cpu, ... each on
// /sys/fs/cgroup/<controller>), else the v2 unified hierarchy where its cgroup.controllers lists
// it (on our hybrid hosts /sys/fs/cgroup/unified offers hugetlb alone; on a v2-only host every
// controller is there). A controller is bound to one hierarchy at a time (cgroups(7) "Using
// cgroups v1 and cgroups v2 at the same time"), so the choice is never ambiguous. The hierarchies
// are found in /proc/self/mountinfo (proc(5)), not guessed from paths.
//
// The jail's group, vmm-jail-<id>, is made below vmm jail's own group in each hierarchy used (or
// below --parent-cgroup), so the limits of whoever runs vmm jail still apply to the VMM (a
// hierarchy's limits hold for its subtree). The VMM's supervisor joins every group made (the
// native helper writes 0 to each cgroup.procs) before it forks the VMM; after the run the groups
// are removed, being ours and then empty.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { parseSize } from '@vmm/core'
import { type CgroupSetting, JailUsageError, SIZED } from './args.js'

/** A mounted cgroup hierarchy. */
export interface Hierarchy {
  readonly version: 1 | 2
  /** Where it is mounted. */
  readonly mount: string
  /** The group the mount shows at `mount` (mountinfo's root field: "/" unless a bind of a subtree). */
  readonly root: string
  /** v1: the controllers bound to it (mount options); v2: its top's cgroup.controllers. */
  readonly controllers: readonly string[]
}

export interface JailCgroups {
  /** The groups made, each with its cgroup.procs file (the helper joins each). */
  readonly dirs: readonly string[]
  /** The memory limit set, in bytes, if any. */
  readonly memoryLimit?: number
  /** The memory controller's group, for the OOM-kill count after the run. */
  readonly memory?: { readonly dir: string; readonly version: 1 | 2 }
  /** The hugetlb controller's group, for the count of faults its limits refused. */
  readonly hugetlb?: { readonly dir: string; readonly version: 1 | 2 }
  /**
   * v2: the controllers this run enabled in a parent's cgroup.subtree_control ("<file>: +<name>").
   * They are left enabled: taking one away again would take it from groups others made meanwhile.
   */
  readonly enabled: readonly string[]
}

/** mountinfo escapes space, tab, newline and backslash as \ooo (proc(5)). */
const unoctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))

/** The cgroup hierarchies mounted in this mount namespace: v1 ones, and the first v2 mount. */
export function cgroupHierarchies(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): Hierarchy[] {
  const found: Hierarchy[] = []
  for (const line of mountinfo.split('\n')) {
    // <id> <parent> <maj:min> <root> <mount point> <options> [optional fields] - <type> <source> <super options>
    const [left, right] = line.split(' - ')
    if (left === undefined || right === undefined) continue
    const f = left.split(' ')
    const [type, , superOptions = ''] = right.split(' ')
    const root = unoctal(f[3] ?? '/')
    const mount = unoctal(f[4] ?? '')
    if (type === 'cgroup') {
      if (found.some((h) => h.version === 1 && h.mount === mount)) continue
      const controllers = superOptions
        .split(',')
        .filter(
          (o) =>
            !/^(rw|ro|name=.*|none|xattr|noprefix|clone_children|cpuset_v2_mode|release_agent=.*)$/.test(o),
        )
      found.push({ version: 1, mount, root, controllers })
    } else if (type === 'cgroup2' && !found.some((h) => h.version === 2)) {
      let controllers: string[] = []
      try {
        controllers = readFileSync(join(mount, 'cgroup.controllers'), 'utf8').split(/\s+/).filter(Boolean)
      } catch {}
      found.push({ version: 2, mount, root, controllers })
    }
  }
  return found
}

/** The hierarchy that has `controller`: a v1 one it is bound to, else the v2 one listing it. */
export function hierarchyOf(controller: string, hierarchies: readonly Hierarchy[]): Hierarchy | undefined {
  return (
    hierarchies.find((h) => h.version === 1 && h.controllers.includes(controller)) ??
    hierarchies.find((h) => h.version === 2 && h.controllers.includes(controller))
  )
}

/** This process's group in `h` (/proc/self/cgroup: v1 lines name their controllers, v2's is "0::"). */
function ownGroup(h: Hierarchy): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, list, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? []
    if (list === undefined || path === undefined) continue
    if (h.version === 2 ? list === '' : h.controllers.some((c) => list.split(',').includes(c))) return path
  }
  return '/'
}

/** Memory and hugetlb control files take sizes ("512MiB"); "max" and -1 (v1: no limit) pass as they are. */
function bytes(setting: CgroupSetting): string {
  if (!SIZED.test(setting.file) || setting.value === 'max' || setting.value === '-1') return setting.value
  const n = parseSize(setting.value)
  if (n === undefined)
    throw new JailUsageError(`${opt(setting)} ${setting.file}=${setting.value}: not a size`)
  return String(n)
}

const opt = (s: CgroupSetting) => s.option ?? '--cgroup'

/** Makes the jail's groups and writes the limits; on a failure removes what it made and throws. */
export function makeCgroups(id: string, settings: readonly CgroupSetting[], parent?: string): JailCgroups {
  const made: string[] = []
  const enabled: string[] = []
  const name = `vmm-jail-${id}`
  let memoryLimit: number | undefined
  let memory: JailCgroups['memory']
  let hugetlb: JailCgroups['hugetlb']
  const hierarchies = settings.length > 0 ? cgroupHierarchies() : []
  try {
    const groupOf = (controller: string, h: Hierarchy): string => {
      let under = parent ?? ownGroup(h)
      if (parent === undefined) {
        // The mount shows the subtree at h.root: our group's path is relative to that.
        const r = relative(h.root, under)
        if (r.startsWith('..'))
          throw new JailUsageError(
            `--cgroup: this process's group ${under} is outside what ${h.mount} shows (${h.root}); pass --parent-cgroup`,
          )
        under = r
      }
      const dir = join(h.mount, under, name)
      if (!made.includes(dir)) {
        if (!existsSync(join(h.mount, under)))
          throw new JailUsageError(
            `${parent === undefined ? "this process's cgroup" : `--parent-cgroup ${parent}`}: there is no group ${join(h.mount, under)} (cgroup v${h.version})`,
          )
        if (h.version === 2) enabled.push(...enableController(h.mount, join(h.mount, under), controller))
        try {
          mkdirSync(dir)
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code
          if (code === 'EEXIST')
            throw new JailUsageError(
              `the cgroup ${dir} already exists; vmm jail makes its own and never reuses one`,
            )
          throw e
        }
        made.push(dir)
      }
      return dir
    }
    for (const s of settings) {
      const controller = s.file.split('.')[0]!
      const h = hierarchyOf(controller, hierarchies)
      if (h === undefined)
        throw new JailUsageError(
          `${opt(s)} ${s.file}: no cgroup hierarchy on this host has the ${controller} controller (${describe(hierarchies)})`,
        )
      const dir = groupOf(controller, h)
      const value = bytes(s)
      const file = join(dir, s.file)
      if (!existsSync(file))
        throw new JailUsageError(
          `${opt(s)} ${s.file}: there is no such control file in ${dir} (cgroup v${h.version}, where this host has the ${controller} controller)`,
        )
      try {
        writeFileSync(file, value)
      } catch (e) {
        throw new JailUsageError(
          `${opt(s)} ${s.file}=${s.value}: writing ${value} to ${file} failed: ${(e as Error).message}`,
        )
      }
      if (s.file === 'memory.limit_in_bytes' || s.file === 'memory.max') {
        memoryLimit = Number(readFileSync(file, 'utf8').trim()) || undefined
        memory = { dir, version: h.version }
      }
      if (controller === 'hugetlb') hugetlb = { dir, version: h.version }
    }
    return {
      dirs: made,
      enabled,
      ...(memoryLimit === undefined ? {} : { memoryLimit }),
      ...(memory === undefined ? {} : { memory }),
      ...(hugetlb === undefined ? {} : { hugetlb }),
    }
  } catch (e) {
    removeCgroups(made)
    throw e
  }
}

/** "v1 <mount>: <controllers>; v2 <mount>: <controllers>", for the error naming a missing controller. */
function describe(hierarchies: readonly Hierarchy[]): string {
  if (hierarchies.length === 0) return 'none is mounted'
  return hierarchies
    .filter((h) => h.controllers.length > 0)
    .map((h) => `v${h.version} ${h.mount}: ${h.controllers.join(',')}`)
    .join('; ')
}

/**
 * v2: a group has a controller only when its parent's cgroup.subtree_control enables it, and a
 * parent can enable only what its own cgroup.controllers lists (cgroups(7) "Cgroups v2 subtree
 * control"), so the controller is enabled from the hierarchy's top down to `parent`. Returns what
 * it wrote. A non-root group that holds processes cannot enable one ("no internal processes").
 */
function enableController(top: string, parent: string, controller: string): string[] {
  const changed: string[] = []
  const steps = relative(top, parent).split('/').filter(Boolean)
  for (let i = 0; i <= steps.length; i++) {
    const dir = join(top, ...steps.slice(0, i))
    const file = join(dir, 'cgroup.subtree_control')
    if (readFileSync(file, 'utf8').split(/\s+/).includes(controller)) continue
    try {
      writeFileSync(file, `+${controller}`)
    } catch (e) {
      throw new JailUsageError(
        `cgroup v2: cannot enable the ${controller} controller in ${file} (${(e as Error).message}); a group with processes cannot delegate controllers: pass --parent-cgroup with a group of its own`,
      )
    }
    changed.push(`${file}: +${controller}`)
  }
  return changed
}

/** How many times the OOM killer acted in the jail's memory group (v1 memory.oom_control, v2 memory.events). */
export function oomKills(cg: JailCgroups): number {
  if (cg.memory === undefined) return 0
  try {
    const file = cg.memory.version === 1 ? 'memory.oom_control' : 'memory.events'
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(cg.memory.dir, file), 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

/**
 * The hugetlb limits of the jail's group that refused a fault, as "<file>: <count>": v2
 * hugetlb.<size>.events "max" (hierarchical), v1 hugetlb.<size>.failcnt. A refused fault is a
 * SIGBUS to the process that touched the page (no reclaim for hugepages).
 */
export function hugetlbHits(cg: JailCgroups): string[] {
  if (cg.hugetlb === undefined) return []
  const { dir, version } = cg.hugetlb
  const hits: string[] = []
  try {
    for (const f of readdirSync(dir)) {
      if (!(version === 2 ? /^hugetlb\.\w+\.events$/ : /^hugetlb\.\w+\.failcnt$/).test(f)) continue
      const text = readFileSync(join(dir, f), 'utf8')
      const count = Number(version === 2 ? (/^max (\d+)$/m.exec(text)?.[1] ?? 0) : text.trim())
      if (count > 0) hits.push(`${f}: ${version === 2 ? 'max ' : ''}${count}`)
    }
  } catch {}
  return hits
}

/** Removes the groups we made (rmdir: only empty groups go; a group still in use stays and is named). */
export function removeCgroups(dirs: readonly string[]): string[] {
  const left: string[] = []
  for (const d of [...dirs].reverse()) {
    for (let attempt = 0; ; attempt++) {
      try {
        rmdirSync(d)
        break
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code === 'ENOENT') break
        // The last task of a group leaves it a moment after its parent saw it exit.
        if (code === 'EBUSY' && attempt < 50) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
          continue
        }
        left.push(`${d} (${code})`)
        break
      }
    }
  }
  return left
}
