// The process's C heap (src/native/heap.cc says why a VMM tunes it). Process-wide policy: the
// program that owns the process calls these (the vmm command does), not a library on its own.
import { native } from './native.js'

/**
 * The mmap threshold a VMM process fixes (glibc's initial one, kept instead of letting it rise):
 * the loader's 18 MB kernel image would raise it, and the inflated initrd and later buffers then
 * stay resident in the brk heap (measured by bench:density: 25 MB of [heap] per VM).
 */
export const VMM_MMAP_THRESHOLD = 128 * 1024

export interface HeapTuning {
  /** Allocations at least this large are mmap()ed and unmapped when freed (bytes; glibc default: dynamic, 128 KiB up to 32 MiB). */
  mmapThreshold?: number
  /** The most malloc arenas (glibc default: 8 per core). */
  arenaMax?: number
}

/** Applies `tuning` to glibc malloc; false where it could not (another C library). */
export function tuneHeap(tuning: HeapTuning): boolean {
  return native().tuneHeap(tuning.mmapThreshold ?? 0, tuning.arenaMax ?? 0)
}

/** Gives free C-heap pages back to the system (malloc_trim(0)); true when some went back. */
export function trimHeap(): boolean {
  return native().trimHeap()
}
