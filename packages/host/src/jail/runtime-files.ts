// Files the jailed VMM uses at run time that its manifest does not name:
//   - the code and validator caches (core's code-cache.ts and manifest/schema.ts, the same places:
//     $VMM_CACHE_DIR, else $XDG_CACHE_HOME/vmm, else ~/.cache/vmm), bound in **read-only** at
//     /cache (VMM_CACHE_DIR=/cache inside; the key of a cached file is the code's path, not the
//     cache's, and the home directory it is in stays out of the jail): the VMM
//     starts from the compiled code `vmm run` itself (outside, as root) or an earlier run wrote,
//     and never writes code that a later VMM would run (a guest that took over one VMM must not
//     reach the next through the cache); a cache write from inside fails, which the caches take as
//     "no cache" (best effort by design);
//   - VMM_SECCOMP_RECORD=<file> (@vmm/cli's seccomp.ts record mode, used to measure the syscall lists): the
//     file is made here, as the caller names it (%p: this process's id, as the VMM inside has its
//     own pid namespace), owned by the jail's uid and bound in read-write, so the record of a
//     jailed run lands where the caller looks. One that exists already must be writable by the
//     uid, or the run is refused naming it.
import { closeSync, existsSync, fchownSync, openSync, realpathSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { JailUsageError, permits } from './errors.js'
import type { Bind } from './runtime.js'

export interface RuntimeFiles {
  readonly binds: readonly Bind[]
  /** Environment records beyond jailEnv's. */
  readonly env: readonly string[]
  /** VMM_CACHE_DIR inside, when a cache is bound in. */
  readonly cacheDir?: string
}

/** Where the caches are, inside the jail. */
const JAIL_CACHE = '/cache'

function cacheRoot(env: NodeJS.ProcessEnv): string | undefined {
  if (env.VMM_CACHE_DIR === 'off') return undefined
  if (env.VMM_CACHE_DIR) return resolve(env.VMM_CACHE_DIR)
  try {
    return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmm')
  } catch {
    return undefined
  }
}

export function runtimeFiles(
  o: { readonly uid: number; readonly gid: number },
  env: NodeJS.ProcessEnv = process.env,
): RuntimeFiles {
  const binds: Bind[] = []
  const out: string[] = []
  const root = cacheRoot(env)
  let cacheDir: string | undefined
  if (root !== undefined && !/[\t\n]/.test(root)) {
    for (const sub of ['code', 'validators']) {
      const d = join(root, sub)
      if (existsSync(d) && statSync(d).isDirectory())
        binds.push({ source: realpathSync(d), target: join(JAIL_CACHE, sub), readOnly: true })
    }
    if (binds.length > 0) cacheDir = JAIL_CACHE
  }
  const record = env.VMM_SECCOMP_RECORD
  if (record) {
    const file = resolve(record.replaceAll('%p', String(process.pid)))
    if (/[\t\n]/.test(file))
      throw new JailUsageError(
        `VMM_SECCOMP_RECORD ${JSON.stringify(file)}: a TAB or newline in a path is not supported`,
      )
    if (existsSync(file)) {
      const st = statSync(file)
      if (!st.isFile() || !permits(st, o.uid, o.gid, 6))
        throw new JailUsageError(
          `VMM_SECCOMP_RECORD: ${file} exists and the jailed VMM (uid ${o.uid}, gid ${o.gid}) cannot write it; remove it, or run with --no-jail`,
        )
    } else {
      const fd = openSync(file, 'wx', 0o600)
      try {
        fchownSync(fd, o.uid, o.gid)
      } finally {
        closeSync(fd)
      }
    }
    binds.push({ source: file, target: file, readOnly: false })
    out.push(`VMM_SECCOMP_RECORD=${file}`)
  }
  return { binds, env: out, ...(cacheDir === undefined ? {} : { cacheDir }) }
}
