// The artefact cache: a directory outside the repository, one sub-directory per content key.
// An entry is complete or absent: builders work in a temporary directory beside it and rename
// it into place (rename(2) is atomic within one file system), so a crash or Ctrl-C mid-build
// never leaves something that a later run takes for a hit. A lock file per key keeps two
// concurrent builds of the same key (two terminals, parallel CI jobs on one runner) apart.
import { createHash } from 'node:crypto'
import {
  closeSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { homedir, hostname } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * $VMM_CACHE_DIR, else $XDG_CACHE_HOME/vmm, else ~/.cache/vmm (the XDG Base Directory
 * specification's default for XDG_CACHE_HOME). Other parts of vmm keep their own sub-directories
 * there (test-kernels/); this package uses default-guest/.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VMM_CACHE_DIR) return env.VMM_CACHE_DIR
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmm')
}

/**
 * A short content key: SHA-256 over the parts in a fixed order, each length-prefixed so that
 * moving bytes from one part to the next changes the key. 20 hex digits (80 bits) keep paths
 * short while making a collision between two configurations practically impossible.
 */
export function contentKey(parts: Readonly<Record<string, string>>): string {
  const h = createHash('sha256')
  for (const name of Object.keys(parts).sort()) {
    const value = Buffer.from(parts[name]!, 'utf8')
    h.update(`${name}\0${value.length}\0`)
    h.update(value)
  }
  return h.digest('hex').slice(0, 20)
}

function ownerOf(lockPath: string): { pid: number; host: string } | undefined {
  try {
    const [pid, host] = readFileSync(lockPath, 'utf8').split('\n')
    return { pid: Number(pid), host: host ?? '' }
  } catch {
    return undefined
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The holder of `lockPath` is gone: its pid is dead on this host. A lock from another host is never stale. */
function stale(owner: { pid: number; host: string }): boolean {
  return owner.host === hostname() && Number.isInteger(owner.pid) && owner.pid > 0 && !alive(owner.pid)
}

/** The live holder of a lock file, or undefined when nobody holds it (absent or stale). */
export function lockHolder(lockPath: string): { pid: number; host: string } | undefined {
  const owner = ownerOf(lockPath)
  return owner && !stale(owner) ? owner : undefined
}

/**
 * Takes the lock file `lockPath` (created with O_EXCL, holding "pid\nhost"), waiting while a
 * live process holds it and breaking it when its holder died. Returns the release function.
 */
export async function acquireLock(
  lockPath: string,
  onWait: (holder: { pid: number; host: string }) => void = () => {},
  pollMs = 500,
  signal?: AbortSignal,
): Promise<() => void> {
  let told = false
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx')
      writeSync(fd, `${process.pid}\n${hostname()}\n`)
      closeSync(fd)
      return () => rmSync(lockPath, { force: true })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const owner = ownerOf(lockPath)
    if (owner && stale(owner)) {
      // Several waiters may find the same dead holder. rename() lets exactly one of them take
      // the stale file away; if the file it took was a fresh lock that another breaker had just
      // created, it puts it back with link() (which, unlike rename, never replaces a file).
      const aside = `${lockPath}.stale-${process.pid}`
      try {
        renameSync(lockPath, aside)
        const taken = ownerOf(aside)
        if (taken && !stale(taken)) {
          try {
            linkSync(aside, lockPath)
          } catch {}
        }
        unlinkSync(aside)
      } catch {}
      continue
    }
    if (owner && !told) {
      told = true
      onWait(owner)
    }
    await sleep(pollMs, undefined, signal ? { signal } : {})
  }
}

/** Removes temporary build directories `<prefix>*` in `dir`; call it only while holding the key's lock. */
export function removeTemporaries(dir: string, prefix: string) {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return
  }
  for (const n of names) if (n.startsWith(prefix)) rmSync(join(dir, n), { recursive: true, force: true })
}
