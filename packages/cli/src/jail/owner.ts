// Who owns a jail directory, so that one left behind can be removed by the next run. The
// supervisor (jail.ts) removes its jail directory after the run; killed by SIGKILL it cannot, and
// the helper, the jail's init and the VMM die with it (PR_SET_PDEATHSIG, prctl(2)) but leave
// <chroot-base>/<id>/root, <id> and the jail's cgroups. So each jail directory holds an owner
// record, <id>/owner, naming its supervisor by pid and start time (proc(5) /proc/<pid>/stat field
// 22, starttime: a pid reused by another process has another), its boot and pid namespace, and
// the cgroups it made; the next jail's supervisor sweeps the chroot base for directories whose
// owner is gone.
//
// A sweep removes only what the record names, and only with rmdir(2) (and unlink of the record
// itself, which vmm wrote): a directory that is not empty (someone put something in it) or a
// cgroup still in use is left, with its record, and named. A directory without a record (made by
// an older vmm, or by anyone else) is never touched. A record from another pid namespace is left
// alone: its pid means nothing here, and removing a live jail's root would unmount it from the
// jail too (rmdir of a mount point in another mount namespace detaches it, mount_namespaces(7)).
import {
  appendFileSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { removeCgroups } from './cgroup.js'

const MAGIC = 'vmm-jail-owner 1'
const RECORD = 'owner'

interface Owner {
  readonly boot: string
  readonly pidns: string
  readonly pid: number
  readonly start: string
  readonly cgroups: readonly string[]
}

/** Field 22 (starttime) of /proc/<pid>/stat, or undefined when there is no such process. */
function startTime(pid: number | 'self'): string | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command (field 2) is in parentheses and may hold spaces and parentheses: count after the last ")".
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
const pidNamespace = () => readlinkSync('/proc/self/ns/pid')

/** Writes the owner record of `jailDir` (just made by us, empty): this process. */
export function writeOwner(jailDir: string): void {
  const text = `${MAGIC}\nboot ${bootId()}\npidns ${pidNamespace()}\npid ${process.pid}\nstart ${startTime('self')}\n`
  writeFileSync(join(jailDir, RECORD), text, { flag: 'wx', mode: 0o600 })
}

/** Adds the jail's cgroups to its record, for a sweep to remove them too. */
export function recordCgroups(jailDir: string, dirs: readonly string[]): void {
  if (dirs.length > 0) appendFileSync(join(jailDir, RECORD), dirs.map((d) => `cgroup ${d}\n`).join(''))
}

/** Removes the record after the run (before its directory's rmdir). */
export function removeOwner(jailDir: string): void {
  try {
    unlinkSync(join(jailDir, RECORD))
  } catch {}
}

function readOwner(jailDir: string): Owner | undefined {
  let text: string
  try {
    text = readFileSync(join(jailDir, RECORD), 'utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n')
  if (lines[0] !== MAGIC) return undefined
  const field = (name: string) =>
    lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1))
  const [boot, pidns, pid, start] = ['boot', 'pidns', 'pid', 'start'].map((n) => field(n)[0])
  if (!boot || !pidns || !pid || !/^\d+$/.test(pid) || !start) return undefined
  // Only groups under the cgroup root: the record is root's, but an rmdir goes nowhere else.
  const cgroups = field('cgroup').filter((d) => d.startsWith('/sys/fs/cgroup/') && !d.includes('/../'))
  return { boot, pidns, pid: Number(pid), start, cgroups }
}

/** Whether the supervisor `o` names is gone: another boot, or no process with its pid and start time. */
function ownerGone(o: Owner): boolean | 'elsewhere' {
  if (o.boot !== bootId()) return true
  if (o.pidns !== pidNamespace()) return 'elsewhere'
  return startTime(o.pid) !== o.start
}

/**
 * Removes the jail directories under `chrootBase` whose owner is gone (see the file comment);
 * returns what it had to leave, each with why, for the caller to name.
 */
export function sweepLeftovers(chrootBase: string): string[] {
  let names: string[]
  try {
    names = readdirSync(chrootBase)
  } catch {
    return []
  }
  const left: string[] = []
  for (const name of names) {
    const dir = join(chrootBase, name)
    const owner = readOwner(dir)
    if (owner === undefined || ownerGone(owner) !== true) continue
    // The root first: a jail whose root is not empty keeps everything, record included.
    const root = join(dir, 'root')
    try {
      rmdirSync(root)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') {
        left.push(`${root} (${code}; left by pid ${owner.pid})`)
        continue
      }
    }
    const busy = removeCgroups(owner.cgroups)
    if (busy.length > 0) {
      left.push(...busy.map((d) => `${d} (left by pid ${owner.pid})`))
      continue
    }
    removeOwner(dir)
    try {
      rmdirSync(dir)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
        left.push(`${dir} (${(e as NodeJS.ErrnoException).code}; left by pid ${owner.pid})`)
    }
  }
  return left
}
