// `vmm run` and `vmm restore` confine themselves with seccomp (@vmm/host's applySeccomp) once the
// machine is built and before the guest's first instruction, unless --no-seccomp. Silent when on;
// --timings shows what was installed. VMM_SECCOMP_RECORD=<file> records instead of enforcing (the profiles are
// measured this way): every call a list lacks runs and is written, per thread, to <file> as JSON
// when the run ends (%p in it: the process id); with VMM_SECCOMP_RECORD_ALL=1 the lists are
// empty, so every call each thread makes is written.
import type { Seccomp } from '@vmm/host'

export interface SeccompHandle {
  /** What was installed, for --timings: "seccomp on: process filter N calls, vCPU filter M calls". */
  readonly summary: string
  /** Writes the record-mode file, if any; call at the end of the run, after disposing. */
  finish(): void
}

export async function confine(
  machine: { readonly virtualMachine: import('@vmm/core').VirtualMachine | undefined },
  enabled: boolean,
): Promise<SeccompHandle> {
  // The default jail's drop of ids comes first: the filters do not allow setuid and its kind.
  const dropped = (await import('@vmm/host/jail')).dropIds()
  const jail = dropped === undefined ? '' : `; jail: dropped to ${dropped}`
  if (!enabled) return { summary: `seccomp off (--no-seccomp)${jail}`, finish() {} }
  const { applySeccomp } = await import('@vmm/host')
  const { writeFileSync } = await import('node:fs')
  const recordFile = process.env.VMM_SECCOMP_RECORD
  const seccomp: Seccomp = applySeccomp(machine, {
    mode: recordFile ? 'record' : 'enforce',
    recordAll: process.env.VMM_SECCOMP_RECORD_ALL === '1',
  })
  const { process: p, vcpu } = seccomp.counts
  const summary =
    `seccomp ${seccomp.mode === 'record' ? 'recording' : 'on'}: process filter ${p} calls, ` +
    (vcpu === undefined
      ? 'no vCPU filter (the hypervisor runs no vCPU threads)'
      : `vCPU filter ${vcpu} calls`) +
    jail
  if (recordFile) process.stderr.write(`vmm: ${summary}; the calls the lists lack go to ${recordFile}\n`)
  return {
    summary,
    finish() {
      if (!recordFile) return
      writeFileSync(
        recordFile.replaceAll('%p', String(process.pid)),
        `${JSON.stringify(seccomp.recorded(), null, 2)}\n`,
      )
    },
  }
}
