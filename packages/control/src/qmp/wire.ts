// QMP's messages (qmp-spec §2.2-2.5): the greeting, a command as the client sends it, the
// success and error answers with the client's `id` echoed, and events with their timestamp.
// Every message the server writes is one JSON object ending in CRLF (§2.1).

import type { VersionInfo } from '../controller.js'
import type { ErrorClass } from '../errors.js'
import type { ControlEvent } from '../events.js'

export interface QmpCommand {
  readonly execute: string
  readonly arguments?: unknown
  /** Any JSON value; echoed as is. */
  readonly id?: unknown
  readonly hasId: boolean
}

export class QmpInputError extends Error {
  override readonly name = 'QmpInputError'
  constructor(
    message: string,
    /** The id of the input, when it had a usable one. */
    readonly id?: { value: unknown },
  ) {
    super(message)
  }
}

const MEMBERS = new Set(['execute', 'arguments', 'id', 'control'])

/**
 * One JSON text as a command, or a QmpInputError with QEMU's wording (monitor/qmp.c,
 * qmp-dispatch.c). `exec-oob` is refused: we offer no capabilities (out-of-band execution).
 */
export function parseCommand(text: string): QmpCommand {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new QmpInputError(`JSON parse error, ${(e as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new QmpInputError('QMP input must be a JSON object')
  const o = v as Record<string, unknown>
  const id = Object.hasOwn(o, 'id') ? { value: o.id } : undefined
  for (const k of Object.keys(o)) {
    if (k === 'exec-oob')
      throw new QmpInputError(
        "QMP input member 'exec-oob' needs the 'oob' capability, which this server does not offer",
        id,
      )
    if (!MEMBERS.has(k)) throw new QmpInputError(`QMP input member '${k}' is unexpected`, id)
  }
  if (!Object.hasOwn(o, 'execute')) throw new QmpInputError("QMP input lacks member 'execute'", id)
  if (typeof o.execute !== 'string')
    throw new QmpInputError("QMP input member 'execute' must be a string", id)
  if (
    Object.hasOwn(o, 'arguments') &&
    (typeof o.arguments !== 'object' || o.arguments === null || Array.isArray(o.arguments))
  )
    throw new QmpInputError("QMP input member 'arguments' must be an object", id)
  return { execute: o.execute, arguments: o.arguments, id: id?.value, hasId: id !== undefined }
}

const line = (v: unknown) => `${JSON.stringify(v)}\r\n`

export const greeting = (version: VersionInfo) =>
  line({ QMP: { version: { qemu: version.qemu, package: version.package }, capabilities: [] } })

export const success = (value: unknown, id?: { value: unknown }) =>
  line(id ? { return: value ?? {}, id: id.value } : { return: value ?? {} })

export const failure = (errorClass: ErrorClass, desc: string, id?: { value: unknown }) =>
  line(id ? { error: { class: errorClass, desc }, id: id.value } : { error: { class: errorClass, desc } })

/** An event; `timestamp` is the time it happened, seconds and microseconds since the epoch (§2.5). */
export function event(e: ControlEvent): string {
  const us = Math.round(e.at * 1000)
  const timestamp = { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 }
  return line(e.data ? { event: e.event, data: e.data, timestamp } : { event: e.event, timestamp })
}
