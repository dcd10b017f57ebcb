// Giving memory and disk space back to the host: guest pages (madvise, the balloon) and disk image
// ranges (fallocate, virtio-blk DISCARD / WRITE_ZEROES). Thin wrappers over src/native/pages.cc.
import { native } from './native.js'

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
