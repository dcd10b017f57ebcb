import { hex } from '@vmm/core'

/**
 * Why a virtqueue could not be used: the closed set of driver mistakes (or attacks) a device may see
 * in the rings. Each one puts the device in DEVICE_NEEDS_RESET (§2.1.2): the rings no longer say
 * anything the device can trust.
 */
export type VirtqueueErrorCode =
  /** The rings are misaligned or not in guest RAM (§2.7 alignment table). */
  | 'RING_ADDRESS'
  /** The available index ran more than a queue's worth ahead of the device (§2.7.6). */
  | 'AVAIL_INDEX'
  /** A head or `next` index is not below the queue (or indirect table) size. */
  | 'DESCRIPTOR_INDEX'
  /** The chain has more descriptors than the queue size: a loop, or too long (§2.7.5.3.1). */
  | 'CHAIN_TOO_LONG'
  /** A buffer is not entirely in guest RAM. */
  | 'BAD_ADDRESS'
  /** The readable or writable total exceeds what a used-ring length (u32) can say. */
  | 'LENGTH_OVERFLOW'
  /** A device-readable descriptor after a device-writable one (§2.7.4.2). */
  | 'DIRECTION'
  /** INDIRECT without the feature, with NEXT, inside an indirect table, or a bad table length (§2.7.5.3). */
  | 'BAD_INDIRECT'

export class VirtqueueError extends Error {
  override readonly name = 'VirtqueueError'
  constructor(
    readonly code: VirtqueueErrorCode,
    message: string,
  ) {
    super(message)
  }
}

export function badRange(address: number, length: number): string {
  return `[${hex(address)}, +${hex(length)})`
}
