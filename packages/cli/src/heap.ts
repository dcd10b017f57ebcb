// The vmm command owns its process, so it sets the C heap's policy (@vmm/host heap.ts; why in
// host/src/native/heap.cc). Measured with bench:density on the default Linux guest at its shell:
// glibc's dynamic mmap threshold had risen to the 18 MB kernel image the loader read, so the
// inflated initrd and everything after came from the brk heap and stayed resident: 25 MB of
// [heap], 38 MB private per VM; with the threshold fixed at 128 KiB, 3.5 MB and 14 MB.
// mallopt at run time instead of GLIBC_TUNABLES, which would need a re-exec (a second Node start).
// Best effort: where @vmm/host cannot load (or the C library is not glibc) nothing changes.

/** Before the machine is built: large buffers get their own mappings, unmapped when freed. */
export async function tuneProcessHeap(): Promise<void> {
  try {
    const { tuneHeap, VMM_MMAP_THRESHOLD } = await import('@vmm/host')
    tuneHeap({ mmapThreshold: VMM_MMAP_THRESHOLD })
  } catch {}
}

/**
 * Once the machine runs: what loading freed goes back to the system, a few seconds on, when the
 * garbage collector has had time to free the loader's buffers. Keeps nothing alive.
 */
export function trimProcessHeap(): void {
  setTimeout(async () => {
    try {
      const { trimHeap } = await import('@vmm/host')
      trimHeap()
    } catch {}
  }, 5000).unref()
}
