// A QMP client for embedders, tests and `vmm ctl`: connects, reads the greeting, negotiates,
// and matches answers to commands by `id` (qmp-spec §2.4), so several may be in flight.
import { connect, type Socket } from 'node:net'
import type { ErrorClass } from '../errors.js'
import { JsonFramer } from './framing.js'

export interface QmpEvent {
  readonly event: string
  readonly data?: Record<string, unknown>
  readonly timestamp: { readonly seconds: number; readonly microseconds: number }
}

export class QmpError extends Error {
  override readonly name = 'QmpError'
  constructor(
    readonly errorClass: ErrorClass | string,
    readonly desc: string,
  ) {
    super(`${errorClass}: ${desc}`)
  }
}

export class QmpClient {
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private readonly listeners = new Set<(e: QmpEvent) => void>()
  private nextId = 1
  private closedError: Error | undefined
  /** The server's greeting (`QMP` member). */
  greeting: { version: { qemu: Record<string, number>; package: string }; capabilities: string[] } | undefined
  /** Settles when the connection closes. */
  readonly closed: Promise<void>

  private constructor(private readonly socket: Socket) {
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.closedError ??= new Error('the QMP connection closed')
        for (const p of this.pending.values()) p.reject(this.closedError)
        this.pending.clear()
        resolve()
      })
    })
    socket.on('error', (e) => {
      this.closedError = e
    })
  }

  /** Connects to `path`, waits for the greeting and runs qmp_capabilities. */
  static async connect(path: string): Promise<QmpClient> {
    const socket = connect(path)
    const c = new QmpClient(socket)
    const greeted = new Promise<void>((resolve, reject) => {
      const framer = new JsonFramer(64 << 20)
      socket.once('error', reject)
      socket.on('data', (chunk: Buffer) => {
        for (const f of framer.push(chunk)) {
          if (f.kind !== 'text') continue
          const m = JSON.parse(f.text) as Record<string, unknown>
          if (!c.greeting && m.QMP) {
            c.greeting = m.QMP as QmpClient['greeting']
            resolve()
          } else c.dispatch(m)
        }
      })
      socket.once('close', () =>
        reject(c.closedError ?? new Error(`${path}: closed before the QMP greeting`)),
      )
    })
    await greeted
    await c.execute('qmp_capabilities')
    return c
  }

  private dispatch(m: Record<string, unknown>): void {
    if (typeof m.event === 'string') {
      for (const l of this.listeners) l(m as unknown as QmpEvent)
      return
    }
    const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined
    if (!p) return
    this.pending.delete(m.id as number)
    if (m.error) {
      const err = m.error as { class: string; desc: string }
      p.reject(new QmpError(err.class, err.desc))
    } else p.resolve(m.return)
  }

  /** Runs `command`; resolves with its `return` value, rejects with a QmpError. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
      )
    })
  }

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Resolves with the next event named `name` (and matching `where`), or rejects after `timeoutMs`. */
  waitFor(name: string, timeoutMs = 30_000, where: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off()
        reject(new Error(`no ${name} event within ${timeoutMs} ms`))
      }, timeoutMs)
      const off = this.on((e) => {
        if (e.event === name && where(e)) {
          clearTimeout(timer)
          off()
          resolve(e)
        }
      })
    })
  }

  close(): Promise<void> {
    this.socket.end()
    return this.closed
  }
}
