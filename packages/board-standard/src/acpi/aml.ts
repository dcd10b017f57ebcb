// A small AML encoder (ACPI 6.5 §20, "ACPI Machine Language Specification") for the definition
// blocks the board generates: named objects, devices, scopes, methods that return a constant,
// packages, buffers, strings and integers, plus the resource descriptors _CRS buffers hold
// (§6.4). Every function returns the encoded bytes; terms compose by concatenation.

export type Aml = Uint8Array

export function concat(...parts: readonly Aml[]): Aml {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const bytes = (...b: number[]): Aml => Uint8Array.from(b)

function le(value: number | bigint, n: number): number[] {
  let v = BigInt(value)
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    out.push(Number(v & 0xffn))
    v >>= 8n
  }
  return out
}

/**
 * PkgLength (§20.2.4): the length of what follows the opcode, including the PkgLength bytes.
 * One byte holds up to 63; otherwise bits 7:6 of the lead byte count the bytes that follow and its
 * bits 3:0 are the low nibble.
 */
export function pkgLength(contentLength: number): Aml {
  if (contentLength + 1 < 0x40) return bytes(contentLength + 1)
  for (let n = 2; n <= 4; n++) {
    const total = contentLength + n
    if (total < 2 ** (4 + 8 * (n - 1))) {
      const out = [((n - 1) << 6) | (total & 0xf)]
      let rest = total >> 4
      for (let i = 1; i < n; i++) {
        out.push(rest & 0xff)
        rest >>= 8
      }
      return Uint8Array.from(out)
    }
  }
  throw new RangeError(`AML package of ${contentLength} bytes is too long`)
}

/** A 4-character NameSeg (§20.2.2): upper case letters, digits and '_', padded with '_'. */
export function nameSeg(name: string): Aml {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(name)) throw new RangeError(`"${name}" is not an AML NameSeg`)
  return new TextEncoder().encode(name.padEnd(4, '_'))
}

/** A NameString: "\\_SB_.PCI0", "^FOO", "_HID" (§20.2.2). */
export function nameString(path: string): Aml {
  let prefix = ''
  let rest = path
  while (rest.startsWith('\\') || rest.startsWith('^')) {
    prefix += rest[0]
    rest = rest.slice(1)
  }
  const head = new TextEncoder().encode(prefix)
  const segs = rest === '' ? [] : rest.split('.').map(nameSeg)
  if (segs.length === 0) return concat(head, bytes(0x00)) // NullName
  if (segs.length === 1) return concat(head, segs[0]!)
  if (segs.length === 2) return concat(head, bytes(0x2e), ...segs) // DualNamePrefix
  return concat(head, bytes(0x2f, segs.length), ...segs) // MultiNamePrefix
}

/** An integer in the shortest encoding (§20.2.3: ZeroOp, OneOp, OnesOp, Byte/Word/DWord/QWordPrefix). */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value)
  if (v < 0n || v >= 2n ** 64n) throw new RangeError(`AML integer ${value} is out of range`)
  if (v === 0n) return bytes(0x00)
  if (v === 1n) return bytes(0x01)
  if (v === 2n ** 64n - 1n) return bytes(0xff)
  if (v <= 0xffn) return bytes(0x0a, Number(v))
  if (v <= 0xffffn) return bytes(0x0b, ...le(v, 2))
  if (v <= 0xffffffffn) return bytes(0x0c, ...le(v, 4))
  return bytes(0x0e, ...le(v, 8))
}

/** A DWordConst (§20.2.3: DWordPrefix 0x0C) whatever the value, for data a spec says is a DWORD. */
export function dword(value: number): Aml {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new RangeError(`AML DWORD ${value} is out of range`)
  return bytes(0x0c, ...le(value, 4))
}

export function string(s: string): Aml {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0 || c > 0x7f) throw new RangeError('AML strings are ASCII without NUL')
  }
  return concat(bytes(0x0d), new TextEncoder().encode(s), bytes(0x00))
}

/** EISA ID as the compressed DWORD ("PNP0A08"), §6.1.5 _HID. */
export function eisaId(id: string): Aml {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`"${id}" is not an EISA ID`)
  const c = (i: number) => id.charCodeAt(i) - 0x40
  const hi = (c(0) << 10) | (c(1) << 5) | c(2)
  const hexes = Number.parseInt(id.slice(3), 16)
  // Stored big-endian: the 3 letters in the first two bytes, the product number after.
  return integer(
    ((hi >> 8) | ((hi & 0xff) << 8) | (((hexes >> 8) & 0xff) << 16) | ((hexes & 0xff) << 24)) >>> 0,
  )
}

/** Name(NameString, DataRefObject) (§20.2.5.1 DefName). */
export function name(n: string, value: Aml): Aml {
  return concat(bytes(0x08), nameString(n), value)
}

/** Scope(NameString) { TermList } (§20.2.5.1 DefScope). */
export function scope(n: string, ...terms: Aml[]): Aml {
  const body = concat(nameString(n), ...terms)
  return concat(bytes(0x10), pkgLength(body.length), body)
}

/** Device(NameString) { TermList } (§20.2.5.2 DefDevice: ExtOpPrefix 0x82). */
export function device(n: string, ...terms: Aml[]): Aml {
  const body = concat(nameString(n), ...terms)
  return concat(bytes(0x5b, 0x82), pkgLength(body.length), body)
}

/** Method(NameString, argCount, serialized) { TermList } (§20.2.5.2 DefMethod). */
export function method(n: string, args: number, serialized: boolean, ...terms: Aml[]): Aml {
  const body = concat(nameString(n), bytes((args & 7) | (serialized ? 8 : 0)), ...terms)
  return concat(bytes(0x14), pkgLength(body.length), body)
}

/** Return(value) (§20.2.5.3 DefReturn). */
export function ret(value: Aml): Aml {
  return concat(bytes(0xa4), value)
}

/** Package() { elements } (§20.2.5.4 DefPackage; at most 255 elements). */
export function pkg(...elements: Aml[]): Aml {
  if (elements.length > 255) throw new RangeError('a Package holds at most 255 elements; use VarPackage')
  const body = concat(bytes(elements.length), ...elements)
  return concat(bytes(0x12), pkgLength(body.length), body)
}

/** Buffer() { bytes } (§20.2.5.4 DefBuffer). */
export function buffer(data: Aml): Aml {
  const body = concat(integer(data.length), data)
  return concat(bytes(0x11), pkgLength(body.length), body)
}

// Resource descriptors (§6.4). A _CRS is a Buffer of descriptors ended by an End Tag.

/** ResourceTemplate() { descriptors } with its End Tag (§6.4.2.9; checksum 0 means "not computed"). */
export function resourceTemplate(...descriptors: Aml[]): Aml {
  return buffer(concat(...descriptors, bytes(0x79, 0x00)))
}

/** IO(Decode16, min, max, align, length) (§6.4.2.5). */
export function ioPort(min: number, max: number, align: number, length: number): Aml {
  return bytes(0x47, 0x01, ...le(min, 2), ...le(max, 2), align, length)
}

/** IRQNoFlags() { irqs } (§6.4.2.1): edge-triggered, active-high, exclusive ISA interrupts. */
export function irqNoFlags(...irqs: number[]): Aml {
  let mask = 0
  for (const i of irqs) {
    if (i < 0 || i > 15) throw new RangeError(`IRQ descriptor: ${i} is not an ISA IRQ`)
    mask |= 1 << i
  }
  return bytes(0x22, ...le(mask, 2))
}

/** Memory32Fixed(ReadWrite, base, length) (§6.4.3.4). */
export function memory32Fixed(base: number, length: number): Aml {
  return bytes(0x86, 0x09, 0x00, 0x01, ...le(base, 4), ...le(length, 4))
}

/** Extended Interrupt (§6.4.3.6): Interrupt(ResourceConsumer, Level/Edge, ActiveHigh/Low, Exclusive) { gsi }. */
export function extendedInterrupt(gsi: number, level: boolean, activeLow: boolean): Aml {
  const flags = 0x01 | (level ? 0 : 0x02) | (activeLow ? 0x04 : 0)
  return bytes(0x89, ...le(6, 2), flags, 1, ...le(gsi, 4))
}

type AddressSpaceKind = 'memory' | 'io' | 'bus'
const SPACE_TYPE: Record<AddressSpaceKind, number> = { memory: 0, io: 1, bus: 2 }

/**
 * Word/DWord/QWord Address Space descriptors (§6.4.3.5.1-3) for what a bridge produces: min and
 * max fixed, positive decode. Memory is read-write and non-cacheable; I/O covers the entire range.
 */
function addressSpace(
  tag: number,
  width: number,
  kind: AddressSpaceKind,
  min: number,
  length: number,
  typeFlags?: number,
): Aml {
  const flagsByKind = { memory: 0x01, io: 0x03, bus: 0x00 }
  const fields = [0, min, min + length - 1, 0, length]
  const body = [
    SPACE_TYPE[kind],
    0x0c, // _MAF | _MIF, producer
    typeFlags ?? flagsByKind[kind],
    ...fields.flatMap((f) => le(f, width)),
  ]
  return bytes(tag, ...le(body.length, 2), ...body)
}

export function wordBusNumber(min: number, count: number): Aml {
  return addressSpace(0x88, 2, 'bus', min, count)
}
export function wordIo(min: number, length: number): Aml {
  return addressSpace(0x88, 2, 'io', min, length)
}
export function dwordMemory(min: number, length: number, prefetchable = false): Aml {
  return addressSpace(0x87, 4, 'memory', min, length, prefetchable ? 0x07 : 0x01)
}
export function qwordMemory(min: number, length: number, prefetchable = false): Aml {
  return addressSpace(0x8a, 8, 'memory', min, length, prefetchable ? 0x07 : 0x01)
}

// Named objects and the few statements a generated event method needs (§20.2.5).

/** OperationRegion(name, space, offset, length) (§20.2.5.2 DefOpRegion); space 1 is SystemIO. */
export function operationRegion(
  n: string,
  space: 'SystemMemory' | 'SystemIO',
  offset: number,
  length: number,
): Aml {
  return concat(
    bytes(0x5b, 0x80),
    nameString(n),
    bytes(space === 'SystemIO' ? 1 : 0),
    integer(offset),
    integer(length),
  )
}

/** A Field's access width (AccessType, §19.6.48) and what happens to the bits a write does not name. */
export interface FieldOptions {
  readonly access?: 'ByteAcc' | 'WordAcc' | 'DWordAcc'
  readonly update?: 'Preserve' | 'WriteAsOnes' | 'WriteAsZeros'
}

const ACCESS_TYPE = { ByteAcc: 1, WordAcc: 2, DWordAcc: 3 } as const
const UPDATE_RULE = { Preserve: 0, WriteAsOnes: 1, WriteAsZeros: 2 } as const

/**
 * Field(region, access, NoLock, update) { name, bits; ... } (§20.2.5.2 DefField; FieldFlags:
 * access type in bits 3:0, update rule in bits 6:5). Each named field's width is encoded like a
 * PkgLength, but it counts bits, not bytes that follow.
 */
export function field(
  region: string,
  fields: readonly (readonly [string, number])[],
  options: FieldOptions = {},
): Aml {
  const list = fields.map(([n, bits]) => {
    if (bits < 1 || bits > 63) throw new RangeError(`field ${n}: ${bits} bits (1-63 supported)`)
    return concat(nameSeg(n), bytes(bits))
  })
  const flags = ACCESS_TYPE[options.access ?? 'ByteAcc'] | (UPDATE_RULE[options.update ?? 'Preserve'] << 5)
  const body = concat(nameString(region), bytes(flags), ...list)
  return concat(bytes(0x5b, 0x81), pkgLength(body.length), body)
}

/** A method call with arguments (§20.2.5.4 MethodInvocation: the name, then the arguments). */
export function call(path: string, ...args: Aml[]): Aml {
  return concat(nameString(path), ...args)
}

/** Local0-Local7 (§20.2.6.2) and Arg0-Arg6 (§20.2.6.1). */
export const local = (i: number): Aml => bytes(0x60 + i)
export const arg = (i: number): Aml => bytes(0x68 + i)

/** A reference to a named object, as an operand. */
export const ref = (path: string): Aml => nameString(path)

/** Store(value, target) (§20.2.5.4 DefStore). */
export function store(value: Aml, target: Aml): Aml {
  return concat(bytes(0x70), value, target)
}

/** And(a, b) with no target (§20.2.5.4 DefAnd: Target is NullName). */
export function and(a: Aml, b: Aml): Aml {
  return concat(bytes(0x7b), a, b, bytes(0x00))
}

/** If(predicate) { terms } (§20.2.5.3 DefIfElse, without Else). */
export function ifThen(predicate: Aml, ...terms: Aml[]): Aml {
  const body = concat(predicate, ...terms)
  return concat(bytes(0xa0), pkgLength(body.length), body)
}

/** Notify(object, value) (§20.2.5.3 DefNotify). */
export function notify(object: string, value: number): Aml {
  return concat(bytes(0x86), nameString(object), integer(value))
}
