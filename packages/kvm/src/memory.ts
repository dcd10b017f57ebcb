// Guest RAM as the VMM maps it (src/native/memory.cc) and the memory slots that show it to a VM.

/** Host memory for the guest: one contiguous mapping, seen by JS as 1 GiB chunks. */
export interface GuestRam {
  readonly size: number
  readonly hostAddress: bigint
  readonly buffers: readonly ArrayBuffer[]
  readonly chunkSize: number
  /** The memfd behind it, or -1 for anonymous memory. */
  readonly fd: number
  /**
   * Gives [offset, +length) (page-aligned) back to the host so it reads as zeroes (core's
   * RamMapping.discard): MADV_DONTNEED on anonymous memory, a hole punched in a memfd, fresh
   * anonymous pages over a snapshot's file (src/native/memory.cc). False where a file mapping has
   * used up its 8192 separate replaced ranges: the pages were dropped and read as the file's again.
   */
  discard(offset: number, length: number): boolean
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
