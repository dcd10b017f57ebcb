// Vcpu.exitRegs / setExitRegs (src/sync-regs.ts): registers through kvm_run's synchronized area
// (KVM_CAP_SYNC_REGS), as the kvm_pvm emulation path uses them, on the real /dev/kvm.
import { afterEach, describe, expect, it } from 'vitest'
import { type Guest, handler, kvmUnavailable, realMode, realModeGuest } from './harness.js'

describe.skipIf(kvmUnavailable)('registers at an exit through kvm_run (real /dev/kvm)', () => {
  let guest: Guest | undefined
  afterEach(() => guest?.dispose())

  it('reads what KVM_GET_REGS reads, and a change is what the vCPU resumes with', async () => {
    // Each `out` exits; the handler bumps ebx and skips the `inc ecx` after each out by moving rip.
    guest = realModeGuest(
      'mov ebx, 1\nmov ecx, 0\nout 0x10, al\ninc ecx\nout 0x10, al\ninc ecx\nout 0x10, al\ninc ecx\nmov eax, ebx\nout 0x11, eax\nmov eax, ecx\nout 0x12, eax\nhlt',
    )
    const vcpu = guest.vm.createVcpu(0)
    realMode(vcpu)
    const seen: Record<number, number> = {}
    const same: boolean[] = []
    await vcpu.run(
      handler({
        pioOut: (port, data, v) => {
          if (port !== 0x10) {
            seen[port] = data[0]!
            return
          }
          const regs = v.exitRegs()
          const viaIoctl = v.getRegs()
          same.push(regs.rip === viaIoctl.rip && regs.rbx === viaIoctl.rbx && regs.rcx === viaIoctl.rcx)
          v.setExitRegs({ ...regs, rbx: regs.rbx + 10n, rip: regs.rip + 2n }) // 66 41: inc ecx
        },
      }),
    )
    expect(same).toEqual([true, true, true])
    expect(seen).toEqual({ 17: 31, 18: 0 }) // ports 0x11, 0x12: ebx 1 + 3 * 10; every inc ecx skipped
  })
})
