import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { listenUnixSocket, type SavedState, type UnixSocketListener } from '@vmm/core'
import { completeChain, type DeviceContext, drainQueue, takeChain, type VirtioDevice } from '../../device.js'
import { gather, scatter } from '../../queue/buffers.js'
import type { DescriptorChain } from '../../queue/split-queue.js'
import { DeviceType } from '../../spec.js'
import {
  type Connection,
  type Control,
  credit,
  FIRST_LOCAL_PORT,
  MAX_CONNECT_LINE,
  nextFreePort,
  PENDING_LIMIT,
  readyConnection,
  type State,
  VSOCK_BUF_ALLOC,
} from './connection.js'
import { EVENT_QUEUE, sendTransportReset } from './events.js'
import {
  decodeHeader,
  encodeHeader,
  HOST_CID,
  ShutdownFlag,
  VSOCK_HDR_SIZE,
  VSOCK_TYPE_STREAM,
  type VsockHeader,
  VsockOp,
} from './packet.js'

const RX = 0
const TX = 1

export { VSOCK_BUF_ALLOC } from './connection.js'
/**
 * virtio-vsock (§5.10) bridging guest AF_VSOCK streams to host Unix sockets the way Firecracker
 * does: a guest connecting to host port P reaches `<udsPath>_<P>`; a host process connects to
 * `udsPath`, writes "CONNECT <port>\n", gets "OK <host port>\n" once the guest accepts, and the
 * socket then carries the stream. Credit-based flow control in both directions.
 */
export class VsockDevice implements VirtioDevice {
  readonly deviceType = DeviceType.VSOCK
  readonly queueSizes = [256, 256, 64]
  readonly features = 0n
  private readonly config = new DataView(new ArrayBuffer(8))
  private readonly server: Server
  private readonly connections = new Map<string, Connection>()
  private readonly control: Control[] = []
  private readonly header = new Uint8Array(VSOCK_HDR_SIZE)
  private context: DeviceContext | undefined
  private nextLocalPort = FIRST_LOCAL_PORT
  /** The machine is paused: packets for the guest are queued, established sockets not read. */
  private paused = false
  private readonly listening: Promise<void>
  private listener: UnixSocketListener | undefined
  private disposed = false
  /** Restored from a snapshot: TRANSPORT_RESET goes to the guest at resume (events.ts). */
  private resetPending = false
  /** The reset went to the guest; the driver has not given an event buffer back since. */
  private resetSent = false
  private availAtReset = 0

  constructor(
    readonly guestCid: number,
    private readonly udsPath: string,
  ) {
    this.config.setBigUint64(0, BigInt(guestCid), true)
    // Half-open sockets: a host that ends its side may still read the guest's reply.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.hostConnect(socket))
    // listenUnixSocket replaces only a stale socket at udsPath; anything else is an error naming it.
    this.listening = listenUnixSocket(this.server, udsPath, 'virtio-vsock socket').then((l) => {
      if (this.disposed) l.close()
      else this.listener = l
    })
    this.listening.catch(() => {}) // for ready() to raise
  }

  /** Before the guest runs: the host socket listens, or the start fails naming its path. */
  ready(): Promise<void> {
    return this.listening
  }

  readConfig(offset: number, data: Uint8Array): void {
    const bytes = new Uint8Array(this.config.buffer)
    if (offset < bytes.length) data.set(bytes.subarray(offset, offset + data.length))
  }

  writeConfig(): void {}

  activate(context: DeviceContext): void {
    this.context = context
  }

  notify(index: number): void {
    const context = this.context
    if (!context) return
    if (index === TX) drainQueue(context, TX, (chain) => this.transmit(context, chain))
    // The event queue holds buffers for TRANSPORT_RESET, sent only after a restore.
    if (index === EVENT_QUEUE) this.sendReset()
    this.flush()
  }

  /** §5.10.6.6: a reset drops every connection. */
  reset(): void {
    this.context = undefined
    for (const c of this.connections.values()) c.socket.destroy()
    this.connections.clear()
    this.control.length = 0
  }

  /**
   * The machine pauses: nothing more goes into the receive queue (control packets and data wait,
   * in order, in `control` and each connection's `pending`) and established sockets stop being
   * read, so host writers wait in their socket buffers.
   */
  pause(): void {
    this.paused = true
    for (const c of this.connections.values()) if (c.state === 'established') c.socket.pause()
  }

  resume(): void {
    this.paused = false
    this.sendReset()
    for (const c of this.connections.values())
      if (c.state === 'established' && c.pendingBytes < PENDING_LIMIT) c.socket.resume()
    this.flush()
  }

  // A snapshot keeps no connection (host sockets cannot come back; §5.10.6.6: the restored guest
  // is told at resume that they are gone), only the next host port, so none is reused soon.
  saveState(): { nextLocalPort: number } {
    return { nextLocalPort: this.nextLocalPort }
  }

  restoreState(s: SavedState): void {
    s.only('nextLocalPort')
    this.nextLocalPort = s.int('nextLocalPort', FIRST_LOCAL_PORT, 0xffff_ffff)
    this.resetPending = true
  }

  private sendReset(): void {
    if (this.resetPending && this.context && !this.paused && sendTransportReset(this.context)) {
      this.resetPending = false
      this.resetSent = true
      this.availAtReset = this.context.queues[EVENT_QUEUE]!.availIndex(this.context.memory)
    }
  }

  /**
   * Settles once the guest has handled the TRANSPORT_RESET of a restore (it posted an event
   * buffer again after the event), at once when no reset is due. A host connection made before
   * that can be lost in the reset (the guest may take the reset after the request), so a host
   * that opens the first connection into a restored guest waits for this (with a deadline of
   * its own: a driver that never refills leaves it unsettled).
   */
  resetHandled(): Promise<void> {
    // The driver handles the event, then gives a buffer back (Linux's virtio_vsock_event_work:
    // handle, refill, kick); the kick is suppressed while it has buffers posted (§2.7.10), so
    // the refill is seen in its avail index, looked at every 2 ms.
    const handled = () => {
      const c = this.context
      if (this.resetSent && c && c.queues[EVENT_QUEUE]!.availIndex(c.memory) !== this.availAtReset)
        this.resetSent = false
      return !this.resetPending && !this.resetSent
    }
    if (handled() || this.disposed) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setInterval(() => {
        if (!handled() && !this.disposed) return
        clearInterval(timer)
        resolve()
      }, 2)
      timer.unref()
    })
  }

  dispose(): void {
    this.reset()
    this.disposed = true
    this.listener?.close()
  }

  /** Active connections, for monitoring and tests. */
  get connectionCount(): number {
    return this.connections.size
  }

  // --- guest to host ---

  private transmit(context: DeviceContext, chain: DescriptorChain): number {
    if (gather(context.memory, chain.readable, 0, this.header) < VSOCK_HDR_SIZE) return 0
    const h = decodeHeader(this.header)
    const key = `${h.dstPort}:${h.srcPort}`
    const conn = this.connections.get(key)
    // Only streams from this guest to the host exist here; anything else is refused (§5.10.6.3).
    if (h.srcCid !== BigInt(this.guestCid) || h.dstCid !== BigInt(HOST_CID) || h.type !== VSOCK_TYPE_STREAM) {
      if (h.op !== VsockOp.RST) this.rstFor(h)
      return 0
    }
    if (conn) {
      conn.peerBufAlloc = h.bufAlloc
      conn.peerFwdCnt = h.fwdCnt
    }
    switch (h.op) {
      case VsockOp.REQUEST:
        if (conn) this.rstFor(h)
        else this.guestConnect(h)
        break
      case VsockOp.RESPONSE:
        if (conn?.state !== 'requesting') {
          this.rstFor(h)
          break
        }
        conn.state = 'established'
        conn.socket.write(`OK ${conn.localPort}\n`)
        conn.socket.resume()
        break
      case VsockOp.RW: {
        if (conn?.state !== 'established') {
          this.rstFor(h)
          break
        }
        const n = Math.min(h.len, chain.readableLength - VSOCK_HDR_SIZE)
        // The socket writes asynchronously: the payload is copied out of guest memory.
        const data = Buffer.allocUnsafe(n)
        gather(context.memory, chain.readable, VSOCK_HDR_SIZE, data)
        conn.socket.write(data, () => {
          conn.fwdCnt = (conn.fwdCnt + n) >>> 0
          if ((conn.fwdCnt - conn.advertisedFwdCnt) >>> 0 >= VSOCK_BUF_ALLOC / 4)
            this.send(conn, VsockOp.CREDIT_UPDATE)
        })
        break
      }
      case VsockOp.CREDIT_REQUEST:
        if (conn) this.send(conn, VsockOp.CREDIT_UPDATE)
        break
      case VsockOp.CREDIT_UPDATE:
        break
      case VsockOp.SHUTDOWN:
        if (!conn) break
        if ((h.flags & (ShutdownFlag.RCV | ShutdownFlag.SEND)) === (ShutdownFlag.RCV | ShutdownFlag.SEND)) {
          // Both directions closed: the connection is over; RST acknowledges it (§5.10.6.5).
          this.close(conn, true)
        } else if (h.flags & ShutdownFlag.SEND) conn.socket.end()
        break
      case VsockOp.RST:
        if (conn) this.close(conn, false)
        break
      default:
        this.rstFor(h)
    }
    return 0
  }

  /** A guest connects to host port P: the host side is the Unix socket `<udsPath>_<P>`. */
  private guestConnect(h: VsockHeader): void {
    const socket = createConnection({ path: `${this.udsPath}_${h.dstPort}`, allowHalfOpen: true })
    const conn = this.track(h.dstPort, h.srcPort, socket, 'connecting')
    conn.peerBufAlloc = h.bufAlloc
    conn.peerFwdCnt = h.fwdCnt
    socket.once('connect', () => {
      conn.state = 'established'
      this.send(conn, VsockOp.RESPONSE)
    })
  }

  // --- host to guest ---

  /** A host process connected to the main socket: read "CONNECT <port>\n", then ask the guest. */
  private hostConnect(socket: Socket): void {
    let line = ''
    const onData = (b: Buffer) => {
      line += b.toString('latin1')
      const nl = line.indexOf('\n')
      if (nl < 0) {
        if (line.length > MAX_CONNECT_LINE) socket.destroy()
        return
      }
      socket.off('data', onData)
      socket.pause()
      const m = /^CONNECT (\d{1,10})$/.exec(line.slice(0, nl).trim())
      const port = m ? Number(m[1]) : Number.NaN
      if (!(port <= 0xffff_ffff) || !this.context) {
        socket.destroy()
        return
      }
      const conn = this.track(this.allocatePort(), port, socket, 'requesting')
      const rest = Buffer.from(line.slice(nl + 1), 'latin1')
      if (rest.length > 0) this.hold(conn, rest)
      this.send(conn, VsockOp.REQUEST)
    }
    socket.on('data', onData)
    socket.on('error', () => socket.destroy())
  }

  private allocatePort(): number {
    const [port, next] = nextFreePort(this.nextLocalPort, this.connections.values())
    this.nextLocalPort = next
    return port
  }

  private track(localPort: number, peerPort: number, socket: Socket, state: State): Connection {
    const conn: Connection = {
      localPort,
      peerPort,
      socket,
      state,
      pending: [],
      pendingBytes: 0,
      txCnt: 0,
      peerBufAlloc: 0,
      peerFwdCnt: 0,
      fwdCnt: 0,
      advertisedFwdCnt: 0,
      hostEnded: false,
    }
    this.connections.set(`${localPort}:${peerPort}`, conn)
    socket.on('data', (b: Buffer) => {
      if (conn.state === 'established') this.hold(conn, b)
    })
    socket.on('end', () => {
      conn.hostEnded = true
      this.flush()
    })
    socket.on('close', () => {
      if (conn.state !== 'closed') this.close(conn, true)
    })
    socket.on('error', () => socket.destroy())
    return conn
  }

  private hold(conn: Connection, data: Buffer): void {
    conn.pending.push(data)
    conn.pendingBytes += data.length
    if (conn.pendingBytes >= PENDING_LIMIT) conn.socket.pause()
    this.flush()
  }

  private close(conn: Connection, sendRst: boolean): void {
    if (conn.state === 'closed') return
    if (sendRst) this.send(conn, VsockOp.RST)
    conn.state = 'closed'
    this.connections.delete(`${conn.localPort}:${conn.peerPort}`)
    conn.socket.destroy()
  }

  /** Answers a packet for no (valid) connection with RST (§5.10.6.3). */
  private rstFor(h: VsockHeader): void {
    this.control.push({
      localPort: h.dstPort,
      peerPort: h.srcPort,
      conn: undefined,
      op: VsockOp.RST,
      flags: 0,
    })
    this.flush()
  }

  private send(conn: Connection, op: number, flags = 0): void {
    this.control.push({ localPort: conn.localPort, peerPort: conn.peerPort, conn, op, flags })
    this.flush()
  }

  /** Fills receive buffers: control packets first, then data within each connection's credit. */
  private flush(): void {
    const context = this.context
    if (!context || this.paused) return
    for (;;) {
      const control = this.control[0]
      const data = control ? undefined : readyConnection(this.connections.values())
      if (!control && !data) return
      const chain = takeChain(context, RX)
      if (!chain) return
      if (chain.writableLength < VSOCK_HDR_SIZE) {
        // A buffer too small for a header carries nothing; give it back empty.
        completeChain(context, RX, chain.head, 0)
        continue
      }
      try {
        if (control) {
          this.control.shift()
          this.deliver(context, chain, control, undefined)
        } else if (data) this.deliverData(context, chain, data)
      } catch (e) {
        context.fail(e)
        return
      }
    }
  }

  private deliverData(context: DeviceContext, chain: DescriptorChain, conn: Connection): void {
    if (conn.pendingBytes === 0) {
      // The host finished sending and all of it reached the guest.
      conn.hostEnded = false
      this.deliver(context, chain, this.packet(conn, VsockOp.SHUTDOWN, ShutdownFlag.SEND), undefined)
      return
    }
    const room = Math.min(chain.writableLength - VSOCK_HDR_SIZE, credit(conn))
    let head = conn.pending[0]!
    if (head.length > room) {
      conn.pending[0] = head.subarray(room)
      head = head.subarray(0, room)
    } else conn.pending.shift()
    conn.pendingBytes -= head.length
    conn.txCnt = (conn.txCnt + head.length) >>> 0
    if (conn.pendingBytes < PENDING_LIMIT / 2) conn.socket.resume()
    this.deliver(context, chain, this.packet(conn, VsockOp.RW, 0), head)
  }

  private packet(conn: Connection, op: number, flags: number): Control {
    return { localPort: conn.localPort, peerPort: conn.peerPort, conn, op, flags }
  }

  /** Writes one packet into a receive chain; every packet carries the connection's credit. */
  private deliver(
    context: DeviceContext,
    chain: DescriptorChain,
    p: Control,
    payload: Uint8Array | undefined,
  ): void {
    const fwdCnt = p.conn?.fwdCnt ?? 0
    if (p.conn) p.conn.advertisedFwdCnt = fwdCnt
    encodeHeader(
      {
        srcCid: BigInt(HOST_CID),
        dstCid: BigInt(this.guestCid),
        srcPort: p.localPort,
        dstPort: p.peerPort,
        len: payload?.length ?? 0,
        type: VSOCK_TYPE_STREAM,
        op: p.op,
        flags: p.flags,
        bufAlloc: VSOCK_BUF_ALLOC,
        fwdCnt,
      },
      this.header,
    )
    scatter(context.memory, chain.writable, 0, this.header)
    if (payload) scatter(context.memory, chain.writable, VSOCK_HDR_SIZE, payload)
    completeChain(context, RX, chain.head, VSOCK_HDR_SIZE + (payload?.length ?? 0))
  }
}
