// The host side of a vsock stream as the device (./device.ts) tracks it: its state, the credit
// counters of §5.10.6.3, the host data not yet delivered, and the limits that bound them.
import type { Socket } from 'node:net'

/** The receive buffer each host-side connection advertises to the guest (buf_alloc). */
export const VSOCK_BUF_ALLOC = 256 * 1024
/** Host data held per connection before its socket is paused. */
export const PENDING_LIMIT = 64 * 1024
/** Host-side ports for host-initiated connections start here, as in Firecracker. */
export const FIRST_LOCAL_PORT = 1 << 30
/** "CONNECT <port>\n" is short; a longer first line is not the protocol. */
export const MAX_CONNECT_LINE = 32

export type State = 'connecting' | 'requesting' | 'established' | 'closed'

/** One stream between a guest port and a host Unix socket. */
export interface Connection {
  readonly localPort: number
  readonly peerPort: number
  socket: Socket
  state: State
  /** Host data not yet sent to the guest. */
  pending: Buffer[]
  pendingBytes: number
  /** Bytes sent to the guest, and the guest's buffer as it last told us (§5.10.6.3). */
  txCnt: number
  peerBufAlloc: number
  peerFwdCnt: number
  /** Bytes from the guest passed to the host socket, and the count last told to the guest. */
  fwdCnt: number
  advertisedFwdCnt: number
  /** The host side ended its stream: tell the guest after the pending data. */
  hostEnded: boolean
}

/** A packet without payload waiting for a receive buffer. */
export interface Control {
  localPort: number
  peerPort: number
  /** Absent for an RST answering a packet of no connection. */
  conn: Connection | undefined
  op: number
  flags: number
}

/** How much more the guest can take: its buffer minus what is in flight (§5.10.6.3). */
export function credit(c: Connection): number {
  return c.peerBufAlloc - ((c.txCnt - c.peerFwdCnt) >>> 0)
}

/** The first established connection with data the guest has credit for, or an end to report. */
export function readyConnection(connections: Iterable<Connection>): Connection | undefined {
  for (const c of connections) {
    if (c.state !== 'established') continue
    if (c.pendingBytes > 0 && credit(c) > 0) return c
    if (c.pendingBytes === 0 && c.hostEnded) return c
  }
  return undefined
}

/** A host port no connection uses, from `next` on, and the one to try after it. */
export function nextFreePort(next: number, connections: Iterable<Connection>): [number, number] {
  const used = new Set([...connections].map((c) => c.localPort))
  for (;;) {
    const port = next
    next = next === 0xffff_ffff ? FIRST_LOCAL_PORT : next + 1
    if (!used.has(port)) return [port, next]
  }
}
