// QMP over a Unix socket (QEMU docs/interop/qmp-spec.rst): a greeting on connect, capability
// negotiation (§2.2 / §4: every command but qmp_capabilities is CommandNotFound until then, and
// no events are sent), answers in order per client with `id` echoed, events to every negotiated
// client. Each client is its own session: its commands wait only for its own earlier ones, a
// client that floods, sends garbage or stops reading is answered or dropped alone, and the
// vCPUs never wait for any of it (verbs are the Machine's asynchronous operations).
import { chmodSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { listenUnixSocket, type UnixSocketListener } from '@vmm/core'
import type { Controller } from '../controller.js'
import { asCommandError } from '../errors.js'
import { DEFAULT_LIMIT, JsonFramer } from './framing.js'
import { event, failure, greeting, parseCommand, QmpInputError, success } from './wire.js'

export interface QmpServerOptions {
  /** The largest JSON text a client may send, bytes (1 MiB). Over it: an error, then the connection closes. */
  readonly maxMessage?: number
  /** Commands a second per client (StratoVirt: 100); over it a command is answered with an error, not run. */
  readonly rateLimit?: number
  /** Bytes a client may leave unread (events, answers) before it is dropped. */
  readonly maxBacklog?: number
}

export class QmpServer {
  private readonly server: Server
  private listener: UnixSocketListener | undefined
  private readonly clients = new Set<Socket>()
  private constructor(
    readonly path: string,
    private readonly controller: Controller,
    private readonly options: Required<QmpServerOptions>,
  ) {
    this.server = createServer((s) => this.session(s))
  }

  /** Listens on `path` (0600; a stale socket there is replaced, anything else refused). */
  static async listen(
    path: string,
    controller: Controller,
    options: QmpServerOptions = {},
  ): Promise<QmpServer> {
    const q = new QmpServer(path, controller, {
      maxMessage: options.maxMessage ?? DEFAULT_LIMIT,
      rateLimit: options.rateLimit ?? 100,
      maxBacklog: options.maxBacklog ?? 16 << 20,
    })
    // The umask makes the socket 0600 from the moment it exists; chmod is belt and braces.
    const mask = process.umask(0o177)
    try {
      // The shared listener: a stale socket is replaced, anything else at `path` refused by name.
      q.listener = await listenUnixSocket(q.server, path, 'QMP socket')
    } finally {
      process.umask(mask)
    }
    chmodSync(path, 0o600)
    return q
  }

  get clientCount(): number {
    return this.clients.size
  }

  private session(s: Socket): void {
    this.clients.add(s)
    const { controller, options } = this
    const framer = new JsonFramer(options.maxMessage)
    let negotiated = false
    let queue: Promise<void> = Promise.resolve()
    let windowStart = Date.now()
    let inWindow = 0
    let closing = false
    const send = (text: string) => {
      if (s.destroyed || s.writableEnded) return
      if (s.writableLength > options.maxBacklog) {
        s.destroy() // it stopped reading: drop it, not the others
        return
      }
      s.write(text)
    }
    const unsubscribe = controller.on((e) => {
      if (negotiated) send(event(e))
    })
    s.on('error', () => {}) // a reset peer; close follows
    s.on('close', () => {
      unsubscribe()
      this.clients.delete(s)
    })
    send(greeting(controller.version))

    const handle = async (text: string): Promise<void> => {
      let id: { value: unknown } | undefined
      try {
        const cmd = parseCommand(text)
        id = cmd.hasId ? { value: cmd.id } : undefined
        if (!negotiated) {
          if (cmd.execute !== 'qmp_capabilities')
            return send(
              failure('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'", id),
            )
          const enable = (cmd.arguments as { enable?: unknown } | undefined)?.enable
          const extra = Object.keys((cmd.arguments as object | undefined) ?? {}).filter((k) => k !== 'enable')
          if (extra.length > 0)
            return send(failure('GenericError', `Parameter '${extra[0]}' is unexpected`, id))
          if (enable !== undefined && !(Array.isArray(enable) && enable.length === 0))
            return send(
              failure('GenericError', 'This server offers no capabilities (oob is not supported)', id),
            )
          negotiated = true
          return send(success({}, id))
        }
        if (cmd.execute === 'qmp_capabilities')
          return send(
            failure('CommandNotFound', 'Capabilities negotiation is already complete, command ignored', id),
          )
        send(success(await controller.execute(cmd.execute, cmd.arguments), id))
      } catch (e) {
        if (e instanceof QmpInputError) return send(failure('GenericError', e.message, e.id))
        const ce = asCommandError(e)
        send(failure(ce.errorClass, ce.message, id))
      }
    }

    s.on('data', (chunk: Buffer) => {
      for (const f of framer.push(chunk)) {
        if (closing) return
        if (f.kind === 'too-long') {
          // After the answers to what came before it, in order; nothing after it is read.
          closing = true
          queue = queue.then(() => {
            send(
              failure('GenericError', `JSON text over ${options.maxMessage} bytes; closing the connection`),
            )
            s.end()
          })
          return
        }
        const now = Date.now()
        if (now - windowStart >= 1000) {
          windowStart = now
          inWindow = 0
        }
        if (++inWindow > options.rateLimit) {
          // Answered in order with the others, never run.
          queue = queue.then(() => {
            let id: { value: unknown } | undefined
            try {
              const c = parseCommand(f.text)
              id = c.hasId ? { value: c.id } : undefined
            } catch {}
            send(
              failure(
                'GenericError',
                `more than ${options.rateLimit} commands a second; command not run`,
                id,
              ),
            )
          })
          continue
        }
        queue = queue.then(() => handle(f.text))
      }
    })
  }

  /** Closes every connection and the socket, and removes the socket file it made. */
  async close(): Promise<void> {
    // end(), not destroy(): what is queued (the last SHUTDOWN event) still reaches the client;
    // one that does not close its side within half a second is cut off.
    const closed = new Promise<void>((r) => this.server.once('close', () => r()))
    // Stops listening and removes the socket file only if it is still the one this server made.
    this.listener?.close()
    for (const s of this.clients) s.end()
    const cut = setTimeout(() => {
      for (const s of this.clients) s.destroy()
    }, 500)
    await closed
    clearTimeout(cut)
  }
}
