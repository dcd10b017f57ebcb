/** Where something is in a manifest file: 1-based line and column (0 when the manifest had no file). */
export interface SourcePosition {
  readonly file: string
  readonly line: number
  readonly column: number
}

/** One problem with a manifest, at the place a person would fix it. */
export interface Diagnostic extends SourcePosition {
  /** JSON pointer into the effective manifest ('' for the document, or a file-level problem). */
  readonly path: string
  readonly message: string
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line > 0 ? `${d.file}:${d.line}:${d.column}` : `${d.file}${d.path ? ` at ${d.path}` : ''}`
  return `${where}: ${d.message}`
}

/** A manifest that cannot become a machine, with every problem found in the pass that failed. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError'
  constructor(readonly diagnostics: readonly Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join('\n'))
  }
}

/** Source positions of the values (and, for object members, the keys) of a parsed manifest. */
export class SourceMap {
  private readonly values = new Map<string, SourcePosition>()
  private readonly keys = new Map<string, SourcePosition>()

  constructor(readonly defaultFile: string) {}

  set(path: string, value: SourcePosition, key?: SourcePosition): void {
    this.values.set(path, value)
    if (key) this.keys.set(path, key)
  }

  /** Drops everything at and below `path` (a value replaced by a later manifest). */
  clear(path: string): void {
    for (const m of [this.values, this.keys]) {
      for (const p of m.keys()) if (p === path || p.startsWith(`${path}/`)) m.delete(p)
    }
  }

  merge(other: SourceMap): void {
    for (const [p, v] of other.values) this.values.set(p, v)
    for (const [p, v] of other.keys) this.keys.set(p, v)
  }

  /** The position of `path`'s key (for "unknown field") or value, else of its nearest ancestor. */
  at(path: string, preferKey = false): SourcePosition {
    let p = path
    for (;;) {
      const hit = (preferKey && p === path ? this.keys.get(p) : undefined) ?? this.values.get(p)
      if (hit) return hit
      if (p === '') return { file: this.defaultFile, line: 0, column: 0 }
      p = p.slice(0, p.lastIndexOf('/'))
    }
  }

  diagnostic(path: string, message: string, preferKey = false): Diagnostic {
    return { ...this.at(path, preferKey), path, message }
  }
}

/** Appends a JSON-pointer segment (RFC 6901 escaping). */
export function pointer(path: string, segment: string | number): string {
  return `${path}/${String(segment).replaceAll('~', '~0').replaceAll('/', '~1')}`
}
