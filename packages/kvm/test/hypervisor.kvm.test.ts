// @vmm/kvm as core's hypervisor on the real /dev/kvm: the optional parts it offers, the vCPU's
// whole x86 state, and the host quirks it applies (the CPUID policy and the exit filter that
// finishes what kvm_pvm's instruction emulator cannot).
import type { Vcpu as CoreVcpu, ExitHandler, GuestAddress, VcpuExit } from '@vmm/core'
import { afterEach, describe, expect, it } from 'vitest'
import { Kvm, KvmVirtualMachine, kvmPvmQuirks, noQuirks } from '../src/index.js'
import type { HostQuirks } from '../src/quirks/index.js'
import { assemble } from '../src/testing.js'
import { kvmUnavailable, LOAD } from './harness.js'

let cleanup: (() => void) | undefined
afterEach(() => {
  cleanup?.()
  cleanup = undefined
})

/** A KvmVirtualMachine with 1 MiB of RAM at 0 through core's calls, and real-mode `source` at LOAD. */
function adapterGuest(quirks: HostQuirks, source?: string) {
  const kvm = Kvm.open()
  const vm = new KvmVirtualMachine(kvm.createVm(), quirks)
  cleanup = () => {
    vm.dispose()
    kvm.close()
  }
  const ram = vm.mapRam(0x100000)
  vm.setMemorySlot({
    slot: 0,
    guestAddress: 0 as GuestAddress,
    size: ram.size,
    mapping: ram,
    mappingOffset: 0,
    readOnly: false,
  })
  if (source) new Uint8Array(ram.buffers[0]!).set(assemble(`.code16\n${source}`), LOAD)
  return vm
}

function realMode(vcpu: CoreVcpu, regs: { rbx?: bigint } = {}): void {
  const s = vcpu.getSregs()
  vcpu.setSregs({ ...s, cs: { ...s.cs, base: 0n, selector: 0 } })
  vcpu.setRegs({ ...vcpu.getRegs(), ...regs, rip: BigInt(LOAD), rflags: 2n })
}

describe.skipIf(kvmUnavailable)('the KVM adapter (real /dev/kvm)', () => {
  it('offers notifiers, GSI routing, the x86 VM part with the clock, and the vCPU x86 part', () => {
    const vm = adapterGuest(noQuirks)
    expect(vm.notifiers).toBeDefined()
    expect(vm.msiRouting).toBeDefined()
    expect(vm.x86.supportedCpuid().some((e) => e.function === 1)).toBe(true)
    expect(vm.x86.clock).toBeDefined()
    // The in-kernel PIC, IOAPIC and PIT exist only after createIrqchip.
    expect(vm.x86.irqchip).toBeUndefined()
    expect(vm.x86.pit).toBeUndefined()
    expect(vm.dirtyLog).toBeDefined()
    expect(vm.bootPolicy).toEqual({ prefersUncompressedInitrd: false })
    expect(vm.createVcpu(0).x86).toBeDefined()
  })

  it('saves and restores the clock as an opaque blob', () => {
    const vm = adapterGuest(noQuirks)
    const clock = vm.x86.clock!
    const later = new Uint8Array(8)
    new DataView(later.buffer).setBigUint64(0, 5_000_000_000_000n, true)
    clock.set(later)
    const back = new DataView(clock.get().buffer).getBigUint64(0, true)
    expect(back >= 5_000_000_000_000n && back < 5_000_000_000_000n + 60_000_000_000n).toBe(true)
  })

  it('saves and restores the in-kernel irqchip (PIC master, slave, IOAPIC) and PIT as opaque blobs', () => {
    const vm = adapterGuest(noQuirks)
    vm.createIrqchip()
    const irqchip = vm.x86.irqchip!
    const pit = vm.x86.pit!
    const chips = irqchip.get()
    expect(chips.length).toBe(3 * 520) // three struct kvm_irqchip
    irqchip.set(chips)
    expect(irqchip.get()).toEqual(chips)
    // Raising IRQ 4 on the IOAPIC changes its saved state (the pin's IRR in the redirection entry).
    vm.setIrqLine(4, true)
    expect(irqchip.get()).not.toEqual(chips)
    irqchip.set(chips)
    expect(irqchip.get()).toEqual(chips)
    expect(() => irqchip.set(chips.subarray(1))).toThrow(/not three struct kvm_irqchip/)
    const counters = pit.get()
    pit.set(counters)
    expect(pit.get().length).toBe(counters.length)
  })

  it('logs the pages a tracked slot was written through, and refuses an untracked slot', () => {
    const vm = adapterGuest(noQuirks)
    expect(() => vm.dirtyLog.take(0)).toThrow(/not tracked/)
    vm.dirtyLog.track(0, true)
    vm.dirtyLog.take(0) // clears whatever was logged so far
    expect(vm.dirtyLog.take(0).every((b) => b === 0)).toBe(true)
    vm.dirtyLog.track(0, false)
    expect(() => vm.dirtyLog.take(0)).toThrow(/not tracked/)
    expect(() => vm.dirtyLog.track(7, true)).toThrow(/no memory slot 7/)
  })

  it("gets a vCPU's whole x86 state and sets it back onto another vCPU", () => {
    const vm = adapterGuest(noQuirks)
    vm.createIrqchip()
    const a = vm.createVcpu(0)
    const b = vm.createVcpu(1)
    realMode(a, { rbx: 0x1234n })
    a.x86!.setMsrs([{ index: 0xc0000081, data: 0x0023001000000000n }]) // STAR
    const state = a.x86!.getState()
    expect(state.msrs.length).toBeGreaterThan(0)
    expect(state.msrs.find((m) => m.index === 0xc0000081)?.data).toBe(0x0023001000000000n)
    expect(state.lapic.length).toBe(1024)
    b.x86!.setState(state)
    const copy = b.x86!.getState()
    expect(copy.regs).toEqual(state.regs)
    expect(copy.sregs.cs).toEqual(state.sregs.cs)
    expect(copy.fpu.fcw).toBe(state.fpu.fcw)
    expect(copy.msrs.find((m) => m.index === 0xc0000081)?.data).toBe(0x0023001000000000n)
    expect(copy.mpState).toBe(state.mpState)
    expect(state.xsave?.length).toBeGreaterThanOrEqual(4096)
    expect(copy.xsave?.subarray(0, 32)).toEqual(state.xsave?.subarray(0, 32)) // the legacy FXSAVE header
    expect(copy.xcrs).toEqual(state.xcrs)
    expect(copy.debugRegs).toEqual(state.debugRegs)
  })

  it("applies kvm_pvm's CPUID policy in setCpuid: no hypercall features, whatever was asked", () => {
    const supported = adapterGuest(noQuirks).x86.supportedCpuid()
    cleanup?.()
    const asked = supported.map((e) =>
      e.function === 0x40000001 ? { ...e, eax: e.eax | (1 << 7) | (1 << 11) } : e,
    )
    const kvmLeaf = (q: HostQuirks) => {
      const vm = adapterGuest(q)
      const vcpu = vm.createVcpu(0)
      vcpu.x86!.setCpuid(asked)
      const leaf = vcpu.x86!.getCpuid().find((e) => e.function === 0x40000001)
      cleanup?.()
      cleanup = undefined
      return leaf?.eax ?? 0
    }
    if (!asked.some((e) => e.function === 0x40000001)) return // no KVM leaves on this host
    expect(kvmLeaf(noQuirks) & (1 << 11)).not.toBe(0)
    const hidden = kvmLeaf(kvmPvmQuirks)
    for (const bit of [7, 11, 13]) expect(hidden & (1 << bit), `bit ${bit}`).toBe(0)
  })

  it('filters exits before the handler: a popcnt kvm_pvm cannot emulate is finished, and handlers see core vCPUs', async () => {
    // Where the CPU runs popcnt natively the filter has nothing to do; on kvm_pvm the exit filter
    // computes it. Either way the guest reaches the out with the count and no internal error.
    const vm = adapterGuest(kvmPvmQuirks, 'popcnt ax, bx\nout 0x10, al\nhlt')
    const vcpu = vm.createVcpu(0)
    realMode(vcpu, { rbx: 0xf0f1n })
    const outs: number[] = []
    const exits: string[] = []
    let sawCore = false
    const h: ExitHandler = {
      pioIn: () => {},
      pioOut: (_port, data, v) => {
        outs.push(data[0]!)
        sawCore = v === vcpu && v.x86 !== undefined
      },
      mmioRead: () => {},
      mmioWrite: () => {},
      onExit: (e: VcpuExit) => {
        exits.push(e.kind)
        return 'stop'
      },
    }
    expect(await vcpu.run(h)).toEqual({ kind: 'hlt' })
    expect(outs).toEqual([9])
    expect(exits).toEqual(['hlt'])
    expect(sawCore).toBe(true)
  })
})
