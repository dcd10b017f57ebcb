// Host-side I/O the device backends need and Node does not offer: TAP devices, readiness watches
// on arbitrary fds, non-blocking packet reads and writes straight into guest memory, and giving
// guest pages back (balloon). Thin wrappers over the native module.
import { type NativeFdWatch, native } from './native.js'

/** TUNSETOFFLOAD flags (include/uapi/linux/if_tun.h). */
export const TapOffload = { Csum: 1, Tso4: 2, Tso6: 4, TsoEcn: 8, Ufo: 16 } as const

/** A TAP interface: packets in and out, with a virtio_net_hdr in front when `vnetHdr`. */
export class Tap {
  private watch: NativeFdWatch | undefined
  private closed = false

  private constructor(
    readonly fd: number,
    readonly name: string,
    readonly vnetHdr: boolean,
  ) {}

  /** Opens TAP `name`, creating it if no interface has that name (needs CAP_NET_ADMIN). */
  static open(name: string, options: { vnetHdr?: boolean } = {}): Tap {
    const r = native().openTap(name, { vnetHdr: options.vnetHdr ?? false })
    return new Tap(r.fd, r.name, options.vnetHdr ?? false)
  }

  setOffload(flags: number): void {
    native().setTapOffload(this.fd, flags)
  }

  /** One packet into `view`: its length, or -1 when none is waiting. */
  read(view: ArrayBufferView): number {
    return native().readFd(this.fd, view)
  }

  /** One packet from `views` (gathered by the kernel): bytes written, or -1 when the queue is full. */
  write(views: readonly ArrayBufferView[]): number {
    return native().writevFd(this.fd, views)
  }

  /**
   * Calls `onReadable` on the event loop while packets are waiting (level-triggered), or stops
   * watching with `undefined` — what a device does while the guest has no receive buffers, so the
   * loop does not spin on packets it cannot take.
   */
  onReadable(onReadable: (() => void) | undefined): void {
    this.watch?.close()
    this.watch = onReadable ? new (native().FdWatch)(this.fd, () => onReadable(), false) : undefined
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.watch?.close()
    native().closeFd(this.fd)
  }
}

/** Gives guest pages back to the host (MADV_DONTNEED): `offset`/`length` page-aligned in `chunk`. */
export function discardGuestPages(chunk: ArrayBuffer, offset: number, length: number): void {
  native().discardMemory(chunk, offset, length)
}

/**
 * Deallocates `length` bytes at `offset` of a regular file (a disk image) so they read as zeroes:
 * a hole (FALLOC_FL_PUNCH_HOLE, the space goes back to the file system; virtio-blk DISCARD) or,
 * with `zeroOnly`, zeroes without necessarily freeing blocks (FALLOC_FL_ZERO_RANGE; WRITE_ZEROES
 * without the unmap flag). The file size never changes. Throws with `code` EOPNOTSUPP where the
 * file system supports neither (callers then write zeroes).
 */
export function deallocateFileRange(fd: number, offset: number, length: number, zeroOnly = false): void {
  native().deallocateFileRange(fd, offset, length, zeroOnly)
}
