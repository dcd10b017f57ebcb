// The in-kernel 8259 pair put back as saved (vm.x86.irqchip.set: Machine.reset, snapshot restore)
// on the real /dev/kvm, when the PICs hold a request the guest never took. On a machine whose
// guest leaves the 8259s alone (Linux on the standard board's hardware-reduced ACPI), an SCI on
// IRQ 9 stays latched in the slave and, through the cascade, as IRQ 2 in the master. Putting the
// boot state back master first let that old slave request latch IRQ 2 into the restored master
// again: a spurious slave interrupt, vector 7 with the power-on vector base, which Linux's second
// boot took as "unexpected #NM exception" (issue 14).
import { describe, expect, it } from 'vitest'
import { Kvm } from '../src/index.js'
import { irqchipState, legacyPics } from '../src/irqchip-state.js'
import { KVM_IRQCHIP_SIZE, KVM_IRQCHIP_STATE_OFFSET, KVM_PIC_STATE } from '../src/state/layouts.js'
import { kvmUnavailable } from './harness.js'

/** The master's and the slave's IRR in an irqchip blob. */
function irrs(blob: Uint8Array): { master: number; slave: number } {
  const pic = (chip: number) =>
    KVM_PIC_STATE.read(
      new DataView(blob.buffer, blob.byteOffset + chip * KVM_IRQCHIP_SIZE + KVM_IRQCHIP_STATE_OFFSET),
      0,
    )
  return { master: pic(0).irr, slave: pic(1).irr }
}

describe.skipIf(kvmUnavailable)('irqchip state (real /dev/kvm)', () => {
  it('puts back a clean 8259 pair over one holding an unacknowledged slave request', () => {
    const kvm = Kvm.open()
    const vm = kvm.createVm()
    try {
      vm.createIrqchip()
      const state = irqchipState(vm)
      const boot = state.get()
      expect(irrs(boot)).toEqual({ master: 0, slave: 0 })
      // The GED raises the SCI (IRQ 9, slave input 1) and lowers it once the guest read its
      // events through the IOAPIC; nobody ever acknowledges it at the PIC.
      vm.irqLine(9, 1)
      vm.irqLine(9, 0)
      expect(irrs(state.get())).toEqual({ master: 1 << 2, slave: 1 << 1 })
      state.set(boot)
      // With the master set first this read { master: 4, slave: 0 }.
      expect(irrs(state.get())).toEqual({ master: 0, slave: 0 })
      // A request saved in the slave still reaches the master through the cascade.
      vm.irqLine(9, 1)
      vm.irqLine(9, 0)
      const pending = state.get()
      state.set(boot)
      state.set(pending)
      expect(irrs(state.get())).toEqual({ master: 1 << 2, slave: 1 << 1 })
    } finally {
      vm.dispose()
      kvm.close()
    }
  })
})

describe.skipIf(kvmUnavailable)('the 8259 pair as firmware leaves it (real /dev/kvm)', () => {
  it('vm.x86.pics.firmwareInit: vectors 0x08/0x70, all masked but the cascade; a raised ISA line stays masked', () => {
    const kvm = Kvm.open()
    const vm = kvm.createVm()
    try {
      vm.createIrqchip()
      const pic = (chip: 0 | 1) =>
        KVM_PIC_STATE.read(new DataView(vm.getIrqchip(chip).buffer), KVM_IRQCHIP_STATE_OFFSET)
      // Power-on (KVM's kzalloc'd 8259s): vector base 0 and nothing masked, so IRQ 4 would be vector 4, #OF.
      expect([pic(0).irqBase, pic(0).imr, pic(1).irqBase, pic(1).imr]).toEqual([0, 0, 0, 0])
      legacyPics(vm).firmwareInit()
      expect(pic(0)).toMatchObject({ irqBase: 0x08, imr: 0xfb, init4: 1, isr: 0, initState: 0 })
      expect(pic(1)).toMatchObject({ irqBase: 0x70, imr: 0xff, init4: 1, isr: 0, initState: 0 })
      // The UART's line and the SCI are latched as requests but neither is taken into service,
      // nor does the masked slave raise the master's cascade input.
      vm.irqLine(4, 1)
      vm.irqLine(9, 1)
      expect(pic(0)).toMatchObject({ irr: 1 << 4, isr: 0 })
      expect(pic(1)).toMatchObject({ irr: 1 << 1, isr: 0 })
    } finally {
      vm.dispose()
      kvm.close()
    }
  })
})
