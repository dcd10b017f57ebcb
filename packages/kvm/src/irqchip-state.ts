// The in-kernel irqchip's state as one opaque blob for core (vm.x86.irqchip: Machine.reset,
// snapshot and restore).
import type { LegacyPics, OpaqueState } from '@vmm/core'
import { decode, encode } from './state/codec.js'
import { KVM_IRQCHIP_STATE_OFFSET, KVM_PIC_STATE } from './state/layouts.js'
import type { Vm } from './vm.js'

/**
 * The in-kernel PIC master, PIC slave and IOAPIC (KVM_GET/SET_IRQCHIP, chip ids 0, 1, 2) as one
 * blob: the three 520-byte struct kvm_irqchip one after the other, in chip-id order.
 *
 * Set slave first: after each KVM_SET_IRQCHIP of a PIC, KVM re-evaluates the pair (i8259.c
 * pic_update_irq), and a slave with a request pulses the master's cascade input (IRQ 2), which
 * latches in the master's IRR (edge). Setting the master first let the slave's *old* request (an
 * SCI on IRQ 9 that the guest, whose 8259s were unused, never acknowledged) latch IRQ 2 into the
 * master just restored; the slave was then cleared, and the master's IRQ 2 with no slave request
 * behind it is a spurious interrupt on the slave, IRQ 7 at the slave's vector base (0 before any
 * guest programs it): vector 7, "unexpected #NM exception" early in the boot after a reset.
 */
export function irqchipState(vm: Pick<Vm, 'getIrqchip' | 'setIrqchip'>): OpaqueState {
  const CHIPS = [0, 1, 2] as const
  const SET_ORDER = [1, 0, 2] as const
  return {
    get: () => {
      const parts = CHIPS.map((c) => vm.getIrqchip(c))
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
      let at = 0
      for (const p of parts) {
        out.set(p, at)
        at += p.length
      }
      return out
    },
    set: (bytes) => {
      if (bytes.length % CHIPS.length !== 0)
        throw new RangeError(`irqchip state: ${bytes.length} bytes is not three struct kvm_irqchip`)
      const size = bytes.length / CHIPS.length
      for (const c of SET_ORDER) vm.setIrqchip(c, bytes.subarray(c * size, (c + 1) * size))
    },
  }
}

/** The master's cascade input: the slave's INT output is wired to it. */
const CASCADE_IRQ = 2

/**
 * vm.x86.pics.firmwareInit on the in-kernel PICs (KVM_SET_IRQCHIP of chips 0 and 1): the fields
 * of struct kvm_pic_state the ICW1-ICW4 and OCW1 a firmware writes leave behind (8259A data
 * sheet; KVM's i8259.c pic_ioport_write): ICW2 the vector base, ICW4 present (init4) in 8086
 * mode, OCW1 the mask. The requests already latched (irr) stay, masked; nothing is in service.
 * Master first is safe here, unlike a restore (irqchipState): with the slave masked it raises no
 * cascade request.
 */
export function legacyPics(vm: Pick<Vm, 'getIrqchip' | 'setIrqchip'>): LegacyPics {
  const program = (chip: 0 | 1, irqBase: number, imr: number) => {
    const blob = vm.getIrqchip(chip)
    const at = blob.subarray(KVM_IRQCHIP_STATE_OFFSET)
    const pic = decode(KVM_PIC_STATE, at)
    encode(
      KVM_PIC_STATE,
      { ...pic, irqBase, imr, isr: 0, initState: 0, init4: 1, autoEoi: 0, readRegSelect: 0, poll: 0 },
      at,
    )
    vm.setIrqchip(chip, blob)
  }
  return {
    firmwareInit: () => {
      program(1, 0x70, 0xff)
      program(0, 0x08, 0xff & ~(1 << CASCADE_IRQ))
    },
  }
}
