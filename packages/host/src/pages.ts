// Giving memory and disk space back to the host: guest pages (madvise, the balloon) and disk image
// ranges (fallocate, virtio-blk DISCARD / WRITE_ZEROES). Thin wrappers over src/native/pages.cc.
import { native } from './native.js'

/**
 * Drops pages of a mapping (MADV_DONTNEED): `offset`/`length` page-aligned in `chunk`. They read as
 * zeroes afterwards only on anonymous memory: over a memfd or a MAP_PRIVATE file (a restored
 * machine's RAM) they read the file's bytes again. Devices give guest RAM back through core's
 * GuestMemory.discard, whose provider knows what backs it (@vmm/kvm's GuestRam.discard).
 */
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
