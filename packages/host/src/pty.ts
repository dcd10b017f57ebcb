// Terminals for container runtimes: a pty pair, and sending its master over a Unix socket
// (SCM_RIGHTS), as runc does for --console-socket. Thin wrappers over src/native/pty.cc.
import { native } from './native.js'

export interface PtyPair {
  master: number
  slave: number
  /** The slave's path, /dev/pts/N. */
  name: string
}

/** A pty pair; `raw`: cfmakeraw(3)'s termios (a transparent relay, no echo, no CR/LF translation). */
export function openPty(raw = false): PtyPair {
  return native().openPty(raw)
}

/** Sends `fd` to whoever listens on the Unix socket `socketPath` (one fd, one byte of data). */
export function sendFd(socketPath: string, fd: number): void {
  native().sendFd(socketPath, fd)
}
