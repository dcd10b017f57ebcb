/** A registration to undo when the transport goes away. */
export interface Disposable {
  dispose(): void
}

/** An interrupt raised without going through the VMM's irqchip calls (KVM irqfd). */
export interface InterruptTrigger extends Disposable {
  /** One edge on the line. */
  trigger(): void
}

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
