// One stream to the guest agent (agent/agent.c): requests answered by 'A' or 'R' in order, the
// process's output, and its exit status. The sandbox holds the container's first session (the
// agent opens it, to say it is up); each `exec` proxy opens one of its own through the vsock
// device's host socket (Firecracker's scheme: "CONNECT <port>\n", answered "OK <port>\n").
import { createConnection, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { OciError } from './errors.js'
import { encodeFrame, type Frame, FrameReader, Msg, type MsgType } from './protocol.js'

export const AGENT_HELLO_PORT = 1023

/**
 * How long a guest may take from its start to its agent's first session (kvm_pvm hosts emulate
 * guest kernel code: a boot takes 20 s to 2.5 min there); past it, the boot has failed.
 */
export const AGENT_BOOT_LIMIT_MS = 10 * 60_000
export const AGENT_SESSION_PORT = 1024

export interface SessionEvents {
  output?: (stream: 'stdout' | 'stderr', data: Buffer) => void
  exit?: (status: number) => void
  /** The stream ended (after the exit status, or without one when the guest or VM went away). */
  close?: () => void
}

export class AgentSession {
  private readonly reader = new FrameReader()
  private readonly waiting: { resolve: (s: string) => void; reject: (e: Error) => void }[] = []
  private closed = false
  hello: string | undefined

  constructor(
    readonly socket: Socket,
    private readonly events: SessionEvents = {},
    initial?: Buffer,
  ) {
    socket.on('data', (b: Buffer) => this.data(b))
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closed = true
      for (const w of this.waiting.splice(0)) w.reject(new OciError('the guest agent closed the connection'))
      this.events.close?.()
    })
    if (initial && initial.length > 0) this.data(initial)
  }

  private data(b: Buffer): void {
    let frames: Frame[]
    try {
      frames = this.reader.push(b)
    } catch {
      this.socket.destroy()
      return
    }
    for (const f of frames) {
      if (f.type === Msg.ack || f.type === Msg.error) {
        const w = this.waiting.shift()
        if (f.type === Msg.ack) w?.resolve(f.payload.toString())
        else w?.reject(new OciError(f.payload.toString()))
      } else if (f.type === Msg.stdout) this.events.output?.('stdout', f.payload)
      else if (f.type === Msg.stderr) this.events.output?.('stderr', f.payload)
      else if (f.type === Msg.exit && f.payload.length === 4) this.events.exit?.(f.payload.readUInt32LE(0))
      else if (f.type === Msg.hello) this.hello = f.payload.toString()
    }
  }

  send(type: MsgType, payload?: Uint8Array | string): void {
    if (!this.closed) this.socket.write(encodeFrame(type, payload))
  }

  /** Sends a request and waits for its 'A' (the payload) or 'R' (thrown as an OciError). */
  request(type: MsgType, payload?: Uint8Array | string): Promise<string> {
    if (this.closed) return Promise.reject(new OciError('the guest agent closed the connection'))
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.send(type, payload)
    })
  }

  close(): void {
    this.socket.end()
  }
}

/** Opens a session to the agent through the vsock device's Unix socket. */
export function connectAgent(vsockPath: string, events: SessionEvents, timeoutMs = 0): Promise<AgentSession> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: vsockPath, allowHalfOpen: true })
    let line = Buffer.alloc(0)
    const timer =
      timeoutMs > 0 ? setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs) : undefined
    const fail = (why: string) => {
      clearTimeout(timer)
      socket.destroy()
      reject(new OciError(`connecting to the container's guest agent (${vsockPath}): ${why}`))
    }
    socket.once('error', (e) => fail(e.message))
    socket.once('close', () => fail('the connection was refused'))
    socket.on('connect', () => socket.write(`CONNECT ${AGENT_SESSION_PORT}\n`))
    const onData = (b: Buffer) => {
      line = Buffer.concat([line, b])
      const nl = line.indexOf(10)
      if (nl < 0) return
      clearTimeout(timer)
      socket.off('data', onData)
      socket.removeAllListeners('close')
      socket.removeAllListeners('error')
      if (!line.subarray(0, nl).toString().startsWith('OK '))
        return fail(`unexpected answer ${line.subarray(0, nl)}`)
      resolve(new AgentSession(socket, events, line.subarray(nl + 1)))
    }
    socket.on('data', onData)
  })
}

/**
 * The container's first session with the agent of a guest restored from a template: the agent
 * listens on vsock, so the host connects, and the session's first message is 'B' (the host's
 * clock and entropy, boot.c). The restored vsock device resets the guest's connections at resume
 * (virtio 1.2 §5.10.6.6) and the guest may handle that event after our connection request, which
 * then dies with the reset, or (the guest forgot the request it had not answered yet) is never
 * answered: so each try has a deadline, the connection counts once 'B' is answered, and it is
 * retried until then. `events.close` is for the session that counts.
 */
/** How long try `i` of the first session waits for the restored agent (it answers in ms; a loaded host is slower). */
const tryMs = (i: number) => Math.min(2000, 150 * (i + 1))

export async function firstSession(
  vsockPath: string,
  events: SessionEvents,
  boot: () => Uint8Array,
  retrying: (why: string) => void = () => {},
  tries = 200,
): Promise<AgentSession> {
  let last = ''
  for (let i = 0; i < tries; i++) {
    let live = false
    try {
      const session = await connectAgent(
        vsockPath,
        { ...events, close: () => live && events.close?.() },
        tryMs(i),
      )
      const answered = session.request(Msg.boot, boot())
      const late = setTimeout(() => session.socket.destroy(), tryMs(i))
      await answered.finally(() => clearTimeout(late))
      live = true
      return session
    } catch (e) {
      last = (e as Error).message
      retrying(last)
      await sleep(50)
    }
  }
  throw new OciError(`the restored guest's agent did not take a session (${tries} tries): ${last}`)
}
