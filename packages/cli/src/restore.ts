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
}

/** The override texts (restore-options.ts) parsed; a malformed one throws, naming it. */
export async function parseOverrides(texts: readonly string[]): Promise<ComponentOverride[]> {
  const { parseOverride } = await import('@vmm/core')
  return texts.map(parseOverride)
}

export async function restore(
  dir: string,
  provider: HypervisorProvider,
  { paused, overrides = [], qmp, seccomp = true }: RestoreOptions,
): Promise<number> {
  // A stop signal ends the run however far the set-up has got, as a clean stop (status 0): one
  // that comes while the machine is still being restored (it is not there yet, or is there paused)
  // is kept and acted on once it is, and the machine is then not resumed. The listeners go on
  // first: a SIGTERM they miss kills the process by Node's default, not as a stop.
  let stopAsked = false
  let machine: import('@vmm/core').Machine | undefined
  const stopNow = () => {
    stopAsked = true
    if (machine && (machine.state === 'running' || machine.state === 'paused'))
      void machine.stop().catch(() => {})
  }
  process.once('SIGINT', stopNow)
  process.once('SIGTERM', stopNow)
  let hypervisor: import('@vmm/core').Hypervisor | undefined
  let closeQmp: import('./qmp.js').QmpHandle | undefined
  let sandbox: import('./seccomp.js').SeccompHandle | undefined
  try {
    hypervisor = await provider.open()
    const { Machine } = await import('@vmm/core')
    const t0 = performance.now()
    machine = await Machine.restore(dir, { hypervisor, overrides })
    if (stopAsked) stopNow()
    if (qmp) closeQmp = await (await import('./qmp.js')).serveQmp(machine, qmp)
    // The filters go on before any vCPU runs again (seccomp.ts), after the QMP socket listens.
    sandbox = await (await import('./seccomp.js')).confine(machine, seccomp)
    // Machine.stop of a paused machine settles asynchronously (its components stop first) and
    // the state reads 'paused' until then: a stop asked for is known from stopAsked, not the state.
    if (!stopAsked) {
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
    process.off('SIGINT', stopNow)
    process.off('SIGTERM', stopNow)
    await machine?.dispose()
    hypervisor?.dispose()
    sandbox?.finish() // last, so the record mode sees the clean-up's calls too
  }
}
