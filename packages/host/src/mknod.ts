// FIFOs and sockets in a directory given by descriptor (virtio-9p's Tmknod). A thin wrapper over
// src/native/mknod.cc; device nodes are refused there (EPERM).
import { native } from './native.js'

/**
 * Creates FIFO or socket `name` (one path component) in directory `dirfd` with `mode` (S_IFIFO
 * or S_IFSOCK plus permission bits; the process umask applies, so callers chmod afterwards).
 * Synchronous: mknod touches one directory entry. Throws Node-style errors (`code`, `errno`).
 */
export function makeFifoOrSocket(dirfd: number, name: string, mode: number): void {
  native().mknodAt(dirfd, name, mode)
}
