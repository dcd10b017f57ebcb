// The jail's cgroups (cgroups(7)). cgroup v1 (our machines: one hierarchy per controller under
// /sys/fs/cgroup/<controller>) or v2 (one unified hierarchy, /sys/fs/cgroup/cgroup.controllers
// exists). The jail's group is made below vmm jail's own group by default, so the limits of
// whoever runs vmm jail still apply to the VMM (a hierarchy's limits hold for its subtree). The
// VMM's supervisor joins it (the native helper writes 0 to cgroup.procs) before it forks the VMM;
// after the run the groups are removed, being ours and then empty.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseSize } from '@vmm/core'
import { type CgroupSetting, JailUsageError } from './args.js'

const ROOT = '/sys/fs/cgroup'

export interface JailCgroups {
  readonly version: 1 | 2
  /** The groups made, each with its cgroup.procs file (the helper joins each). */
  readonly dirs: readonly string[]
  /** The memory limit set, in bytes, if any. */
  readonly memoryLimit?: number
  /** The memory controller's group, for the OOM-kill count after the run. */
  readonly memoryDir?: string
}

/** This process's group in hierarchy `controller` (v1) or the unified one (v2: controller ""). */
function ownGroup(controller: string): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, list, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? []
    if (list?.split(',').includes(controller)) return path!
    if (controller === '' && list === '') return path!
  }
  return '/'
}

function bytes(setting: CgroupSetting): string {
  if (!setting.file.startsWith('memory.') || setting.value === 'max' || setting.value === '-1')
    return setting.value
  const n = parseSize(setting.value)
  if (n === undefined) throw new JailUsageError(`--cgroup ${setting.file}=${setting.value}: not a size`)
  return String(n)
}

/** Which cgroup version the host runs (v2: the unified hierarchy mounted on /sys/fs/cgroup). */
export function cgroupVersion(): 1 | 2 {
  return existsSync(join(ROOT, 'cgroup.controllers')) ? 2 : 1
}

/** Makes the jail's groups and writes the limits; on a failure removes what it made and throws. */
export function makeCgroups(id: string, settings: readonly CgroupSetting[], parent?: string): JailCgroups {
  const version = cgroupVersion()
  const made: string[] = []
  const name = `vmm-jail-${id}`
  let memoryLimit: number | undefined
  let memoryDir: string | undefined
  try {
    const groupOf = (controller: string): string => {
      const base = version === 1 ? join(ROOT, controller) : ROOT
      if (!existsSync(base))
        throw new JailUsageError(
          `--cgroup: this host has no ${version === 1 ? `cgroup v1 "${controller}" hierarchy (${base})` : 'cgroup v2 hierarchy'}`,
        )
      const dir = join(base, parent ?? ownGroup(version === 1 ? controller : ''), name)
      if (!made.includes(dir)) {
        if (version === 2) enableController(dirname2(dir), controller)
        try {
          mkdirSync(dir)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST')
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
      const dir = groupOf(controller)
      const value = bytes(s)
      const file = join(dir, s.file)
      if (!existsSync(file))
        throw new JailUsageError(
          `--cgroup ${s.file}: there is no such control file in ${dir} (cgroup v${version})`,
        )
      try {
        writeFileSync(file, value)
      } catch (e) {
        throw new JailUsageError(
          `--cgroup ${s.file}=${s.value}: writing ${value} to ${file} failed: ${(e as Error).message}`,
        )
      }
      if (s.file === 'memory.limit_in_bytes' || s.file === 'memory.max') {
        memoryLimit = Number(readFileSync(file, 'utf8').trim()) || undefined
        memoryDir = dir
      }
    }
    return {
      version,
      dirs: made,
      ...(memoryLimit === undefined ? {} : { memoryLimit }),
      ...(memoryDir === undefined ? {} : { memoryDir }),
    }
  } catch (e) {
    removeCgroups(made)
    throw e
  }
}

function dirname2(dir: string): string {
  return dir.slice(0, dir.lastIndexOf('/'))
}

/** v2: a controller must be enabled in the parent's cgroup.subtree_control for a child to have it. */
function enableController(parent: string, controller: string): void {
  const file = join(parent, 'cgroup.subtree_control')
  if (readFileSync(file, 'utf8').split(/\s+/).includes(controller)) return
  try {
    writeFileSync(file, `+${controller}`)
  } catch (e) {
    throw new JailUsageError(
      `cgroup v2: cannot enable the ${controller} controller in ${parent} (${(e as Error).message}); a group with processes cannot delegate controllers: pass --parent-cgroup with a group of its own`,
    )
  }
}

/** How many times the OOM killer acted in the jail's memory group (v1 memory.oom_control, v2 memory.events). */
export function oomKills(cg: JailCgroups): number {
  if (cg.memoryDir === undefined) return 0
  try {
    const file = cg.version === 1 ? 'memory.oom_control' : 'memory.events'
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(join(cg.memoryDir, file), 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
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
