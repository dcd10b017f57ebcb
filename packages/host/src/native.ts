// The typed contract of @vmm/host's native module (src/native/*.cc) and its loader. Every
// function is a thin syscall wrapper; policy lives in the TypeScript around it.
import { fileURLToPath } from 'node:url'
import { loadAddon } from './addon.js'

export interface NativeFdWatch {
  close(): void
}

export interface NativeHostBinding {
  // fd.cc
  closeFd(fd: number): void
  /** A non-blocking, close-on-exec eventfd. */
  eventfd(initial?: number): number
  /** The counter since the last read, or null when nothing was signalled. */
  eventfdRead(fd: number): bigint | null
  eventfdWrite(fd: number, value?: bigint): void
  /** Bytes read into `view`, or -1 when the fd would block. */
  readFd(fd: number, view: ArrayBufferView): number
  /** writev() of the views (one packet from a descriptor chain), or -1 when the fd would block. */
  writevFd(fd: number, views: readonly ArrayBufferView[]): number
  /** Calls `onReadable` on the event loop while `fd` is readable; `ref` false: does not keep the loop alive. */
  FdWatch: new (
    fd: number,
    onReadable: (status: number) => void,
    ref?: boolean,
  ) => NativeFdWatch
  // tap.cc
  /** Opens (creating if needed) TAP interface `name`; the fd is non-blocking. */
  openTap(name: string, options?: { vnetHdr?: boolean }): { fd: number; name: string }
  setTapOffload(fd: number, flags: number): void
  // netns.cc
  /** A TAP made inside the network namespace at `namespacePath` (one thread setns()es there); non-blocking fd. */
  openTapIn(
    namespacePath: string,
    name: string,
    options?: { vnetHdr?: boolean },
  ): { fd: number; name: string }
  /** TUNGETIFF of a TAP fd: its interface name and whether frames carry a 12-byte virtio_net_hdr. */
  tapInfo(fd: number): { name: string; vnetHdr: boolean }
  // pages.cc
  /** MADV_DONTNEED on a page-aligned range of an ArrayBuffer (a guest RAM chunk). */
  discardMemory(buffer: ArrayBuffer, offset: number, length: number): void
  deallocateFileRange(fd: number, offset: number, length: number, zeroOnly: boolean): void
  // disk.cc
  /** flock(LOCK_EX or LOCK_SH | LOCK_NB): false when another open file description holds a conflicting lock. */
  lockFile(fd: number, exclusive: boolean): boolean
  /** ioctl(BLKGETSIZE64): a block device's size in bytes. */
  blockDeviceSize(fd: number): bigint
  // mknod.cc
  /** mknodat(dirfd, name, mode, 0) for a FIFO or socket (EPERM for anything else). */
  mknodAt(dirfd: number, name: string, mode: number): void
  // heap.cc
  /** mallopt(M_MMAP_THRESHOLD), mallopt(M_ARENA_MAX) (0: unchanged); false where not glibc. */
  tuneHeap(mmapThreshold: number, arenaMax: number): boolean
  /** malloc_trim(0): true when memory went back to the system. */
  trimHeap(): boolean
  // pty.cc
  /** openpty(3), both ends close-on-exec; raw: cfmakeraw(3)'s termios. */
  openPty(raw?: boolean): { master: number; slave: number; name: string }
  /** Connects to a Unix stream socket and sends `fd` over it with SCM_RIGHTS. */
  sendFd(socketPath: string, fd: number): void
  // seccomp.cc
  /** The SIGSYS handler that names a denied call (names[nr]) and the thread, then exits with `exitCode`. */
  seccompReporter(names: readonly string[], exitCode: number): void
  /** no_new_privs, then the filter on this thread (tsync: on all threads); record: its listener goes to a supervisor. */
  seccompInstall(program: Uint8Array, options: { tsync: boolean; record: boolean; kind: number }): void
  /** The instruction pointer of the record mode's re-issued calls, which its vCPU filter allows. */
  seccompTrampoline(): bigint
  /** The distinct calls (per thread) record-mode filters let through; `thread` its name then. */
  seccompRecords(): { kind: number; tid: number; nr: number; thread: string }[]
}

let loaded: NativeHostBinding | undefined

/** Loads the native module (build/Release or prebuilds/<platform>-<arch>), or fails loudly with what to do about it. */
export function native(): NativeHostBinding {
  loaded ??= loadAddon<NativeHostBinding>(
    '@vmm/host',
    fileURLToPath(new URL('..', import.meta.url)),
    'vmm_host',
  )
  return loaded
}
