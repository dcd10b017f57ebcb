// One way to read and write a kernel struct: a layout table (field -> byte offset and kind) over a
// DataView, little-endian as x86 is. The native module copies each struct whole into one buffer
// per ioctl; these codecs are the only place that knows where its fields are.

/** How one field (or a whole struct) sits in memory. */
export interface Layout<T> {
  readonly size: number
  read(view: DataView, at: number): T
  /** Writes `value`; an undefined value (or field) leaves those bytes as they are. */
  write(view: DataView, at: number, value: T | undefined): void
}

function scalar<T>(size: number, read: Layout<T>['read'], write: Layout<T>['write']): Layout<T> {
  return { size, read, write }
}

export const u8 = scalar<number>(
  1,
  (v, at) => v.getUint8(at),
  (v, at, x) => x !== undefined && v.setUint8(at, Number(x)),
)
export const u16 = scalar<number>(
  2,
  (v, at) => v.getUint16(at, true),
  (v, at, x) => x !== undefined && v.setUint16(at, Number(x), true),
)
export const u32 = scalar<number>(
  4,
  (v, at) => v.getUint32(at, true),
  (v, at, x) => x !== undefined && v.setUint32(at, Number(x), true),
)
/** A __u64 as bigint; numbers are accepted on write (as the old field-by-field binding did). */
export const u64 = scalar<bigint>(
  8,
  (v, at) => v.getBigUint64(at, true),
  (v, at, x) => x !== undefined && v.setBigUint64(at, BigInt.asUintN(64, BigInt(x)), true),
)

/** `n` opaque bytes (a register file, a page), copied out on read. */
export function bytes(n: number): Layout<Uint8Array> {
  return scalar(
    n,
    (v, at) => new Uint8Array(v.buffer.slice(v.byteOffset + at, v.byteOffset + at + n)),
    (v, at, x) => {
      if (!ArrayBuffer.isView(x)) return
      const src = new Uint8Array(x.buffer, x.byteOffset, Math.min(n, x.byteLength))
      new Uint8Array(v.buffer, v.byteOffset + at, n).set(src)
    },
  )
}

/** `n` elements of `item`, back to back. */
export function array<T>(item: Layout<T>, n: number): Layout<T[]> {
  return scalar(
    item.size * n,
    (v, at) => Array.from({ length: n }, (_, i) => item.read(v, at + i * item.size)),
    (v, at, x) => {
      if (!Array.isArray(x)) return
      for (let i = 0; i < n && i < x.length; i++) item.write(v, at + i * item.size, x[i])
    },
  )
}

export type Fields<T> = { readonly [K in keyof T]-?: readonly [offset: number, layout: Layout<T[K]>] }

/**
 * A C struct of `size` bytes (sizeof, padding included) with `fields` at their offsets. Fields the
 * table leaves out (padding, reserved bytes, parts this package does not model) are never touched.
 */
export function struct<T extends object>(size: number, fields: Fields<T>): Layout<T> & { fields: Fields<T> } {
  const entries = Object.entries(fields) as [keyof T & string, readonly [number, Layout<unknown>]][]
  for (const [name, [offset, layout]] of entries)
    if (offset + layout.size > size)
      throw new Error(`layout: field ${name} ends past the struct's ${size} bytes`)
  return {
    size,
    fields,
    read(v, at) {
      const out = {} as Record<string, unknown>
      for (const [name, [offset, layout]] of entries) out[name] = layout.read(v, at + offset)
      return out as T
    },
    write(v, at, x) {
      if (x === undefined || x === null) return
      for (const [name, [offset, layout]] of entries)
        layout.write(v, at + offset, (x as Record<string, unknown>)[name])
    },
  }
}

function viewOf(b: ArrayBuffer | Uint8Array): DataView {
  return b instanceof Uint8Array ? new DataView(b.buffer, b.byteOffset, b.byteLength) : new DataView(b)
}

/** Decodes a struct the native module copied out of the kernel. */
export function decode<T>(layout: Layout<T>, buffer: ArrayBuffer | Uint8Array): T {
  if (buffer.byteLength < layout.size)
    throw new RangeError(`decode: ${buffer.byteLength} bytes, the struct has ${layout.size}`)
  return layout.read(viewOf(buffer), 0)
}

/** Encodes `value` into a new zeroed struct, or over `into` (a struct got from the kernel). */
export function encode<T>(layout: Layout<T>, value: T, into?: Uint8Array): Uint8Array {
  const out = into ?? new Uint8Array(layout.size)
  if (out.byteLength < layout.size)
    throw new RangeError(`encode: ${out.byteLength} bytes, the struct has ${layout.size}`)
  layout.write(viewOf(out), 0, value)
  return out
}
