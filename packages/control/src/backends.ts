// Host back ends named before the device that uses them, as QEMU and StratoVirt hot-plug do:
// `blockdev-add` (node-name -> a disk image), `netdev_add` (id -> a TAP interface), `chardev-add`
// (id -> a Unix socket), then `device_add driver=... drive=|netdev=|chardev=<name>`. Our
// components take the back end as their own properties (path, tap, backend+path), so device_add
// folds the named back end into the manifest node.
import { CommandError } from './errors.js'

export type Backend =
  | { readonly kind: 'block'; readonly filename: string; readonly readOnly: boolean }
  | { readonly kind: 'net'; readonly ifname: string }
  | { readonly kind: 'chardev'; readonly path: string }

const str = (x: unknown): string | undefined => (typeof x === 'string' && x.length > 0 ? x : undefined)
const obj = (x: unknown): Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : {}

/**
 * blockdev-add's BlockdevOptions (qapi/block-core.json), the forms Kata and StratoVirt send:
 * `{driver: "raw", file: {driver: "file", filename}}` or `{driver: "file", filename}`.
 */
export function blockBackend(args: Record<string, unknown>): Backend {
  const driver = args.driver
  let filename: string | undefined
  if (driver === 'file') filename = str(args.filename)
  else if (driver === 'raw') {
    const file = args.file
    filename =
      typeof file === 'string' ? undefined : obj(file).driver === 'file' ? str(obj(file).filename) : undefined
  } else
    throw new CommandError(
      'GenericError',
      `blockdev-add: driver '${String(driver)}' is not supported (raw or file)`,
    )
  if (!filename)
    throw new CommandError(
      'GenericError',
      `blockdev-add: needs 'filename' (driver file) or 'file': {driver: 'file', filename} (driver raw)`,
    )
  return { kind: 'block', filename, readOnly: args['read-only'] === true }
}

/** netdev_add's NetdevTapOptions (qapi/net.json): `{type: "tap", id, ifname}`. */
export function netBackend(args: Record<string, unknown>): Backend {
  if (args.type !== 'tap')
    throw new CommandError('GenericError', `netdev_add: type '${String(args.type)}' is not supported (tap)`)
  const ifname = str(args.ifname)
  if (!ifname) throw new CommandError('GenericError', `netdev_add: a tap netdev needs 'ifname'`)
  return { kind: 'net', ifname }
}

/** chardev-add's ChardevBackend (qapi/char.json): `{type: "socket", data: {addr: {type: "unix", data: {path}}, server: true}}`. */
export function charBackend(backend: Record<string, unknown>): Backend {
  const data = obj(backend.data)
  const addr = obj(data.addr)
  const path = addr.type === 'unix' ? str(obj(addr.data).path) : undefined
  if (backend.type !== 'socket' || !path)
    throw new CommandError('GenericError', `chardev-add: only a unix socket backend is supported`)
  return { kind: 'chardev', path }
}

/** The node properties a back end stands for, given the device property that named it. */
export function backendProperties(
  property: 'drive' | 'netdev' | 'chardev',
  b: Backend,
): Record<string, unknown> {
  const want = { drive: 'block', netdev: 'net', chardev: 'chardev' }[property]
  if (b.kind !== want)
    throw new CommandError('GenericError', `device_add: '${property}' names a ${b.kind} back end`)
  switch (b.kind) {
    case 'block':
      return { path: b.filename, ...(b.readOnly ? { readOnly: true } : {}) }
    case 'net':
      return { tap: b.ifname }
    case 'chardev':
      return { backend: 'socket', path: b.path }
  }
}
