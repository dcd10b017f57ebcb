// How virtio's transports take doorbells and interrupts off the vCPU path: through the
// hypervisor's notifiers (core's vm.notifiers: KVM's ioeventfd and irqfd), where it has them.
import type { InterruptTrigger, Registration, VirtualMachine, VmNotifiers } from '@vmm/core'

export type { InterruptTrigger }

/** A registration to undo when the transport goes away. */
export type Disposable = Registration

/**
 * Which guest writes ring a doorbell: virtio-mmio's QueueNotify is 32 bits wide and carries the
 * queue index (the default); a virtio-pci queue has its own address, written 16 bits wide
 * (§4.1.4.4), so any value there is a notification of that queue.
 */
export interface DoorbellMatch {
  readonly length: 2 | 4
  /** Only writes of the queue index ring it. */
  readonly datamatch: boolean
}

/**
 * What a hypervisor may offer to take virtio's doorbells and interrupts off the vCPU path (KVM's
 * ioeventfd and irqfd). Each method answers undefined when it cannot, and the transport falls back
 * to trapped MMIO writes and its InterruptLine.
 */
export interface VirtioAccelerator {
  /**
   * Calls `onNotify` on the event loop when the guest writes the 32-bit value `queue` at guest
   * physical `address` (or a write that `match` describes); the write no longer exits to user space.
   */
  notifier(
    address: number,
    queue: number,
    onNotify: () => void,
    match?: DoorbellMatch,
  ): Disposable | undefined
  /** An edge-triggered interrupt on `gsi`. */
  interrupt(gsi: number): InterruptTrigger | undefined
}

/**
 * VirtioAccelerator over the hypervisor's notifiers: a queue doorbell is a doorbell notifier (the
 * guest's write completes in the hypervisor and wakes the event loop) and the interrupt is an
 * interrupt trigger (raising the GSI without a call into the irqchip).
 */
export class NotifierAccelerator implements VirtioAccelerator {
  constructor(private readonly notifiers: VmNotifiers) {}

  notifier(
    address: number,
    queue: number,
    onNotify: () => void,
    match: DoorbellMatch = { length: 4, datamatch: true },
  ): Disposable | undefined {
    return this.notifiers.doorbell(
      { address, length: match.length, ...(match.datamatch ? { datamatch: BigInt(queue) } : {}) },
      onNotify,
    )
  }

  interrupt(gsi: number): InterruptTrigger | undefined {
    return this.notifiers.interrupt(gsi)
  }
}

/** The accelerator for a machine's VM, or undefined where its hypervisor has no notifiers. */
export function acceleratorFor(vm: VirtualMachine): VirtioAccelerator | undefined {
  return vm.notifiers ? new NotifierAccelerator(vm.notifiers) : undefined
}
