// What the jail's kvm tests share: why they cannot run here, how they look at the processes a
// jail made (through /proc: proc(5) "task/<tid>/children"), and a snapshot of a running guest.
import type { ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { Machine } from '@vmm/core'
import { jailHelperPath } from '@vmm/host'
import { hypervisorProvider, Kvm } from '@vmm/kvm'

/** Why a jail on /dev/kvm cannot run here (`rootReason` when not root), or undefined. */
export function jailUnavailable(rootReason: string): string | undefined {
  if (process.getuid?.() !== 0) return rootReason
  const kvm = Kvm.unavailableReason()
  if (kvm) return kvm
  try {
    jailHelperPath()
  } catch (e) {
    return (e as Error).message
  }
  return undefined
}

/** A file's text, or '' when it cannot be read (a process that ended meanwhile). */
export function readOr(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** The threads of `pid` (none once it has gone). */
export const tasks = (pid: number): string[] =>
  existsSync(`/proc/${pid}/task`) ? readdirSync(`/proc/${pid}/task`) : []

/** Every process below `pid`, children before their own children. */
export function descendants(pid: number): number[] {
  const out: number[] = []
  for (const t of tasks(pid))
    for (const k of readOr(`/proc/${pid}/task/${t}/children`).split(' ').filter(Boolean).map(Number))
      out.push(k, ...descendants(k))
  return out
}

/** The child's exit code once it has exited (null: a signal ended it). */
export const exited = (child: ChildProcess): Promise<number | null> =>
  new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)))

/** A snapshot at `snap` of the machine `manifest` once it runs (unjailed, on /dev/kvm), then stopped. */
export async function snapshotRunning(manifest: string, snap: string): Promise<void> {
  const hypervisor = await hypervisorProvider.open()
  try {
    const m = await Machine.fromFile(manifest, { hypervisor })
    const done = m.run()
    for (let i = 0; i < 100 && m.state !== 'running'; i++) await new Promise((r) => setTimeout(r, 20))
    await m.pause()
    await m.snapshot(snap)
    await m.stop()
    await done
    await m.dispose()
  } finally {
    hypervisor.dispose()
  }
}
