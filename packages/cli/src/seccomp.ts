// `vmm run` and `vmm restore` confine themselves with seccomp (@vmm/host's applySeccomp) once the
// machine is built and before the guest's first instruction, unless --no-seccomp. Silent when on,
// unless --timings asks. VMM_SECCOMP_RECORD=<file> records instead of enforcing (the profiles are
// measured this way): every call a list lacks runs and is written, per thread, to <file> as JSON
// when the run ends (%p in it: the process id); with VMM_SECCOMP_RECORD_ALL=1 the lists are
// empty, so every call each thread makes is written.
import type { Seccomp } from '@vmm/host'

export interface SeccompHandle {
  /** Writes the record-mode file, if any; call at the end of the run, before disposing. */
  finish(): void
}

export async function confine(
  machine: { readonly virtualMachine: import('@vmm/core').VirtualMachine | undefined },
  enabled: boolean,
  verbose: boolean,
): Promise<SeccompHandle> {
  if (!enabled) {
    if (verbose) process.stderr.write('vmm: seccomp: off (--no-seccomp)\n')
    return { finish() {} }
  }
  const { applySeccomp } = await import('@vmm/host')
  const { writeFileSync } = await import('node:fs')
  const recordFile = process.env.VMM_SECCOMP_RECORD
  const seccomp: Seccomp = applySeccomp(machine, {
    mode: recordFile ? 'record' : 'enforce',
    recordAll: process.env.VMM_SECCOMP_RECORD_ALL === '1',
  })
  if (verbose || recordFile)
    process.stderr.write(
      `vmm: seccomp: ${seccomp.mode === 'record' ? 'recording' : 'on'}: process filter ${seccomp.counts.process} calls, ` +
        `vCPU filter ${seccomp.counts.vcpu ?? 'none (the hypervisor has no vCPU threads)'}${seccomp.counts.vcpu === undefined ? '' : ' calls'}\n`,
    )
  return {
    finish() {
      if (!recordFile) return
      writeFileSync(
        recordFile.replaceAll('%p', String(process.pid)),
        `${JSON.stringify(seccomp.recorded(), null, 2)}\n`,
      )
    },
  }
}
