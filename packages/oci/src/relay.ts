// The host end of a container process's stdio. Without a terminal the caller's fds 0/1/2 are the
// process's (containerd's shim hands the runtime pipes from dockerd's FIFOs): stdin goes to the
// agent, its stdout/stderr frames come back to fds 1 and 2. With a terminal, the host end is the
// slave of a pty whose master went to the caller over --console-socket: the slave is raw
// (the guest's own pty does the line discipline), and its window size follows the master's
// (SIGWINCH: the slave is this process's controlling terminal).
import { closeSync, openSync, writeSync } from 'node:fs'
import tty from 'node:tty'
import { Msg } from './protocol.js'
import type { AgentSession } from './session.js'

/** write(2) until done; a non-blocking fd that is full is waited for rather than lost. */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0
  while (off < data.length) {
    try {
      off += writeSync(fd, data, off)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'EAGAIN') return // EPIPE, EBADF: nobody reads this stream any more
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
    }
  }
}

export interface Stdio {
  /** Output of the process, written in order. */
  write(stream: 'stdout' | 'stderr', data: Buffer): void
  /** Starts sending input (and window sizes) to the agent. */
  start(session: AgentSession): void
  close(): void
}

export function pipeStdio(): Stdio {
  return {
    write: (stream, data) => writeAll(stream === 'stdout' ? 1 : 2, data),
    start(session) {
      // A blocking read loop would stall the event loop: read through a stream of fd 0.
      let input: NodeJS.ReadableStream
      try {
        input = process.stdin
      } catch {
        session.send(Msg.stdinEof)
        return
      }
      input.on('data', (b: Buffer) => session.send(Msg.stdin, b))
      input.on('end', () => session.send(Msg.stdinEof))
      input.on('error', () => session.send(Msg.stdinEof))
    },
    close() {
      process.stdin.destroy()
    },
  }
}

/**
 * `slave`: the pty slave's path, or, in a jail (no /dev/pts there), two fds open on it, which
 * vmm-jail made the controlling terminal (its `ctty` record).
 */
export function terminalStdio(slave: string | { input: number; output: number }): Stdio {
  // The first open by this session leader makes it the controlling terminal (SIGWINCH comes here).
  const fdIn = typeof slave === 'string' ? openSync(slave, 'r+') : slave.input
  const fdOut = typeof slave === 'string' ? openSync(slave, 'r+') : slave.output
  // Raw since openPty(true) (cfmakeraw): Node's setRawMode would keep ONLCR, and the guest's
  // pty already turned each \n into \r\n.
  const input = new tty.ReadStream(fdIn)
  const size = new tty.WriteStream(fdOut)
  let session: AgentSession | undefined
  const sendSize = () => {
    // getWindowSize() answers what the stream last read; Node re-reads it (TIOCGWINSZ) on
    // SIGWINCH only for process.stdout and stderr, so this stream is told to here.
    ;(size as unknown as { _refreshSize?: () => void })._refreshSize?.()
    const [cols, rows] = size.getWindowSize()
    const b = Buffer.alloc(4)
    b.writeUInt16LE(rows, 0)
    b.writeUInt16LE(cols, 2)
    session?.send(Msg.winsize, b)
  }
  return {
    write: (_stream, data) => writeAll(fdOut, data),
    start(s) {
      session = s
      sendSize()
      process.on('SIGWINCH', sendSize)
      input.on('data', (b: Buffer) => s.send(Msg.stdin, b))
      input.on('error', () => {})
    },
    close() {
      process.off('SIGWINCH', sendSize)
      input.destroy()
      try {
        closeSync(fdOut)
      } catch {}
    },
  }
}
