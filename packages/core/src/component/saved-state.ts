// Reading a component's saved state back (Snapshottable.restoreState). The state comes from a
// snapshot file, so it is untrusted input, checked like a guest write: every field is looked at
// before any of it is applied, and the first one that is wrong is named, with the component's id.

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Typed, checked access to the fields of one component's saved state. */
export class SavedState {
  private readonly fields: Record<string, unknown>

  constructor(
    /** The component's id, for messages. */
    private readonly id: string,
    state: unknown,
  ) {
    if (!isObject(state)) throw this.error('$', `must be an object, got ${describe(state)}`)
    this.fields = state
  }

  private error(field: string, what: string): Error {
    return new Error(`${this.id}: saved state ${field}: ${what}`)
  }

  /** Refuses field `field` for a reason of the reader's own. */
  refuse(field: string, what: string): never {
    throw this.error(field, what)
  }

  /** An integer in [min, max]. */
  int(field: string, min: number, max: number): number {
    const v = this.fields[field]
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
      throw this.error(field, `must be an integer in ${min}..${max}, got ${describe(v)}`)
    return v as number
  }

  /** A byte (0..255), what most device registers are. */
  u8(field: string): number {
    return this.int(field, 0, 0xff)
  }

  bool(field: string): boolean {
    const v = this.fields[field]
    if (typeof v !== 'boolean') throw this.error(field, `must be true or false, got ${describe(v)}`)
    return v
  }

  /** Whether field `field` is null (an optional part left out). */
  isNull(field: string): boolean {
    return this.fields[field] === null
  }

  /** A finite number (a time in ms). */
  number(field: string): number {
    const v = this.fields[field]
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw this.error(field, `must be a finite number, got ${describe(v)}`)
    return v
  }

  /** A list of bytes no longer than `maxLength` (and no shorter than `minLength`). */
  bytes(field: string, maxLength: number, minLength = 0): number[] {
    const v = this.fields[field]
    const size = minLength === maxLength ? `exactly ${maxLength}` : `at most ${maxLength}`
    if (
      !Array.isArray(v) ||
      v.length > maxLength ||
      v.length < minLength ||
      !v.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)
    )
      throw this.error(field, `must be a list of ${size} bytes, got ${describe(v)}`)
    return v as number[]
  }

  /** Raw bytes of exactly `length` (a register file, a table: the codec's $bytes). */
  buffer(field: string, length: number): Uint8Array {
    const v = this.fields[field]
    if (!(v instanceof Uint8Array) || v.length !== length)
      throw this.error(field, `must be ${length} bytes ($bytes), got ${describe(v)}`)
    return v
  }

  /** Whether field `field` is there at all (a part a later version added). */
  has(field: string): boolean {
    return Object.hasOwn(this.fields, field)
  }

  /** A list of integers in [min, max], no longer than `maxLength`. */
  ints(field: string, min: number, max: number, maxLength: number): number[] {
    const v = this.fields[field]
    if (
      !Array.isArray(v) ||
      v.length > maxLength ||
      !v.every((x) => Number.isInteger(x) && x >= min && x <= max)
    )
      throw this.error(
        field,
        `must be a list of at most ${maxLength} integers in ${min}..${max}, got ${describe(v)}`,
      )
    return v as number[]
  }

  /** A list of at most `maxLength` strings of at most 256 characters. */
  strings(field: string, maxLength: number): string[] {
    const v = this.fields[field]
    if (
      !Array.isArray(v) ||
      v.length > maxLength ||
      !v.every((x) => typeof x === 'string' && x.length <= 256)
    )
      throw this.error(field, `must be a list of at most ${maxLength} strings, got ${describe(v)}`)
    return v as string[]
  }

  /** A string of at most `maxLength` characters matching `pattern`. */
  string(field: string, pattern: RegExp, maxLength = 256): string {
    const v = this.fields[field]
    if (typeof v !== 'string' || v.length > maxLength || !pattern.test(v))
      throw this.error(field, `must be a string matching ${pattern}, got ${describe(v)}`)
    return v
  }

  /** A list of exactly `length` nested states. */
  list(field: string, length: number): SavedState[] {
    const v = this.fields[field]
    if (!Array.isArray(v) || v.length !== length)
      throw this.error(field, `must be a list of ${length} states, got ${describe(v)}`)
    return v.map((x, i) => new SavedState(`${this.id}: ${field}[${i}]`, x))
  }

  /** A nested state (another SavedState over field `field`). */
  nested(field: string): SavedState {
    return new SavedState(`${this.id}: ${field}`, this.fields[field])
  }

  /** Refuses fields this reader does not know: a state of another version or another device. */
  only(...known: string[]): this {
    const extra = Object.keys(this.fields).filter((k) => !known.includes(k))
    if (extra.length > 0) throw this.error(extra[0]!, 'unknown field (a state of another device or version?)')
    return this
  }
}

function describe(v: unknown): string {
  if (v instanceof Uint8Array) return `${v.length} bytes`
  const s = JSON.stringify(v)
  if (s === undefined) return String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}
