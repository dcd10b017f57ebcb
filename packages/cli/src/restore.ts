// `vmm restore <dir> [--paused] [--qmp <socket>]`: a machine from a snapshot directory
// (Machine.restore in @vmm/core): refused with the snapshot's own error, naming the file and what
// is wrong, before any vCPU runs, with overrides (restore-options.ts) applied to the snapshot's
// manifest for a clone; then resumed (or, with --paused, left paused for the control plane,
// --qmp, to resume with `cont`) and run until the guest or a signal ends it, as `vmm run` does,
// under seccomp unless --no-seccomp. Nothing in the directory is written.
import type { ComponentOverride, HypervisorProvider } from '@vmm/core'

export interface RestoreOptions {
  /** Leave the machine paused for the control plane. */
  paused: boolean
  /** Clone overrides of component properties (restore-options.ts). */
  overrides?: readonly ComponentOverride[]
  /** Serve QMP on this Unix socket. */
  qmp?: string
  /** The system call filters (seccomp.ts); on unless --no-seccomp. */
  seccomp?: boolean
  /** Stop signals listened for since before the call (listenForStop); by default, from the call. */
  stop?: StopListener
}

/** The override texts (restore-options.ts) parsed; a malformed one throws, naming it. */
export async function parseOverrides(texts: readonly string[]): Promise<ComponentOverride[]> {
  const { parseOverride } = await import('@vmm/core')
  return texts.map(parseOverride)
}

/** SIGINT and SIGTERM, listened for from when it is made (listenForStop). */
export interface StopListener {
  /** Whether one came. */
  readonly asked: boolean
  /** Calls `stop` at each signal from now on, and at once if one came already. */
  onStop(stop: () => void): void
  close(): void
}

/**
 * Starts listening for SIGINT and SIGTERM. `vmm restore` does so as early as it can on the side
 * that runs the machine (main.ts), so that a signal during its start-up is a stop: without a
 * listener Node dies of it, with the signal's status. Node runs a signal's listeners in the order
 * they were added, so this one comes before any a component adds.
 */
export function listenForStop(): StopListener {
  let asked = false
  let then: (() => void) | undefined
  const listener = () => {
    asked = true
    then?.()
  }
  process.once('SIGINT', listener)
  process.once('SIGTERM', listener)
  return {
    get asked() {
      return asked
    },
    onStop(stop) {
      then = stop
      if (asked) stop()
    },
    close() {
      process.off('SIGINT', listener)
      process.off('SIGTERM', listener)
    },
  }
}

export async function restore(
  dir: string,
  provider: HypervisorProvider,
  { paused, overrides = [], qmp, seccomp = true, stop = listenForStop() }: RestoreOptions,
): Promise<number> {
  // A stop signal ends the run however far the set-up has got, as a clean stop (status 0): one
  // that comes while the machine is still being restored (it is not there yet, or is there paused)
  // is kept and acted on once it is, and the machine is then not resumed.
  let machine: import('@vmm/core').Machine | undefined
  let hypervisor: import('@vmm/core').Hypervisor | undefined
  let closeQmp: import('./qmp.js').QmpHandle | undefined
  let sandbox: import('./seccomp.js').SeccompHandle | undefined
  try {
    hypervisor = await provider.open()
    const { Machine } = await import('@vmm/core')
    const t0 = performance.now()
    const restored = await Machine.restore(dir, { hypervisor, overrides })
    machine = restored
    stop.onStop(() => {
      if (restored.state === 'running' || restored.state === 'paused') void restored.stop().catch(() => {})
    })
    if (qmp) closeQmp = await (await import('./qmp.js')).serveQmp(machine, qmp)
    // The filters go on before any vCPU runs again (seccomp.ts), after the QMP socket listens.
    sandbox = await (await import('./seccomp.js')).confine(machine, seccomp)
    // Machine.stop of a paused machine settles asynchronously (its components stop first) and
    // the state reads 'paused' until then: a stop asked for is known from stop.asked, not the state.
    if (!stop.asked) {
      if (paused) process.stderr.write(`vmm: restored ${dir}, paused; resume it through the control plane\n`)
      else if (machine.state === 'paused') await machine.resume()
    }
    if (process.env.VMM_RESTORE_TIMINGS)
      process.stderr.write(`vmm: restored in ${(performance.now() - t0).toFixed(1)} ms; ${sandbox.summary}\n`)
    const result = await machine.done
    if (result.code !== 0 || result.status === 'failed') process.stderr.write(`vmm: ${result.reason}\n`)
    return result.status === 'failed' && result.code === 0 ? 1 : result.code
  } finally {
    await closeQmp?.close()
    stop.close()
    await machine?.dispose()
    hypervisor?.dispose()
    sandbox?.finish() // last, so the record mode sees the clean-up's calls too
  }
}
