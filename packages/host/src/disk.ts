// Disk images: an advisory lock per open image and a block device's size. Thin wrappers over
// src/native/disk.cc.
import { native } from './native.js'

/**
 * Takes an advisory lock (flock) on the open image `fd`: exclusive for a disk the guest may
 * write, shared for a read-only one, so readers share an image and a writer has it alone. Returns
 * false when another open of the file holds a conflicting lock. Released when `fd` is closed.
 */
export function lockDiskImage(fd: number, exclusive: boolean): boolean {
  return native().lockFile(fd, exclusive)
}

/** The size in bytes of the block device open as `fd` (BLKGETSIZE64; fstat says 0 for one). */
export function blockDeviceSize(fd: number): number {
  return Number(native().blockDeviceSize(fd))
}
