// The snapshot's state as readable JSON. JSON because the state is small (kilobytes: registers,
// LAPIC pages, queue indices), a person debugging a restore can read and diff it, and every
// component's state is already plain data (Snapshottable: what structuredClone copies). JSON has
// no 64-bit integers and no bytes, so those two travel tagged: a bigint as {"$bigint": "0x..."}
// (hex, as registers are read), a Uint8Array as {"$bytes": "<base64>"}. The raw guest RAM is not
// here: it is the memory file beside this one. A key of the state's own that starts with "$" is
// written with one more "$" in front, so no value can pass for a tag.

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError'
  constructor(
    /** The file (or directory) at fault. */
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${message}`, options)
  }
}

/** The state as JSON text, bigints and bytes tagged. */
export function encodeState(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return { $bigint: `0x${v.toString(16)}` }
    if (v instanceof Uint8Array)
      return { $bytes: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') }
    if (
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      Object.keys(v).some((k) => k.startsWith('$'))
    )
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.startsWith('$') ? `$${k}` : k, x]))
    return v
  })
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const HEX = /^0x[0-9a-f]{1,16}$/

/**
 * Parses what encodeState wrote. The text is untrusted (a file anyone could have edited): a bad
 * tag is an error naming where it is, never a silent wrong value.
 */
export function decodeState(text: string, path: string): unknown {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (cause) {
    throw new SnapshotError(path, `not JSON (${(cause as Error).message})`, { cause })
  }
  return untag(parsed, path, '$')
}

function untag(v: unknown, path: string, at: string): unknown {
  if (Array.isArray(v)) return v.map((x, i) => untag(x, path, `${at}[${i}]`))
  if (typeof v !== 'object' || v === null) return v
  const o = v as Record<string, unknown>
  const keys = Object.keys(o)
  if ('$bigint' in o) {
    const s = o.$bigint
    if (keys.length !== 1 || typeof s !== 'string' || !HEX.test(s))
      throw new SnapshotError(path, `${at}: a $bigint must be {"$bigint": "0x<1-16 hex digits>"}`)
    return BigInt(s)
  }
  if ('$bytes' in o) {
    const s = o.$bytes
    if (keys.length !== 1 || typeof s !== 'string' || s.length % 4 !== 0 || !BASE64.test(s))
      throw new SnapshotError(path, `${at}: a $bytes must be {"$bytes": "<base64>"}`)
    return new Uint8Array(Buffer.from(s, 'base64'))
  }
  const out: Record<string, unknown> = {}
  for (const k of keys) {
    if (k.startsWith('$') && !k.startsWith('$$')) throw new SnapshotError(path, `${at}: unknown tag "${k}"`)
    const name = k.startsWith('$') ? k.slice(1) : k
    if (name === '__proto__') throw new SnapshotError(path, `${at}: key "__proto__" is not allowed`)
    out[name] = untag(o[k], path, `${at}.${name}`)
  }
  return out
}
