// Guest RAM as the VMM maps it (src/native/memory.cc) and the memory slots that show it to a VM.

/** Host memory for the guest: one contiguous mapping, seen by JS as 1 GiB chunks. */
export interface GuestRam {
  readonly size: number
  readonly hostAddress: bigint
  readonly buffers: readonly ArrayBuffer[]
  readonly chunkSize: number
  /** The memfd behind it, or -1 for anonymous memory. */
  readonly fd: number
  /** Gives the pages back; every view of `buffers` becomes empty. Harmless twice. */
  unmap(): void
}

export interface MemoryRegion {
  slot: number
  guestAddress: number
  size: number
  ram: GuestRam
  /** Offset of the region inside `ram`. */
  offset?: number
  readonly?: boolean
  logDirtyPages?: boolean
}
