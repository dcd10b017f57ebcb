import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from '../third-party/yaml.js'
import { type Diagnostic, ManifestError, pointer, SourceMap, type SourcePosition } from './diagnostics.js'

/** A plugin named by a manifest, with the file it must be resolved from (Node resolution is per directory). */
export interface PluginRef {
  readonly name: string
  readonly fromFile: string
  readonly position: SourcePosition
}

/** A manifest with its includes merged: plain data plus where every value came from. */
export interface ManifestSource {
  readonly file: string
  readonly data: Record<string, unknown>
  readonly positions: SourceMap
  readonly plugins: readonly PluginRef[]
  /** Every file read, the manifest first. */
  readonly files: readonly string[]
}

/**
 * Reads a manifest file and the manifests it includes (`include: base.yaml` or a list, resolved
 * from the including file's directory). Included manifests come first, in order; the including
 * manifest is merged over them: objects merge key by key, everything else is replaced, so a user
 * manifest can extend a board preset and override a single field of one component. `plugins` lists
 * are concatenated. Throws a ManifestError for YAML syntax errors, missing files and include cycles.
 */
export function readManifest(file: string): ManifestSource {
  const files: string[] = []
  const result = readOne(resolve(file), [], files, undefined)
  return { ...result, file: resolve(file), files }
}

/** A manifest given as an object (the programmatic API): no positions, `file` names it in messages. */
export function manifestFromObject(data: Record<string, unknown>, file = '<manifest>'): ManifestSource {
  const positions = new SourceMap(file)
  const plugins = Array.isArray(data.plugins)
    ? data.plugins.map((name) => ({
        name: String(name),
        fromFile: resolve('manifest.yaml'),
        position: positions.at('/plugins'),
      }))
    : []
  return { file, data: structuredClone(data), positions, plugins, files: [] }
}

function readOne(
  file: string,
  stack: string[],
  files: string[],
  includedAt: SourcePosition | undefined,
): { data: Record<string, unknown>; positions: SourceMap; plugins: PluginRef[] } {
  const at = (d: string): Diagnostic[] => [
    { ...(includedAt ?? { file, line: 0, column: 0 }), path: includedAt ? '/include' : '', message: d },
  ]
  if (stack.includes(file)) {
    throw new ManifestError(at(`include cycle: ${[...stack.slice(stack.indexOf(file)), file].join(' -> ')}`))
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code
    throw new ManifestError(at(`cannot read manifest ${file}${code ? ` (${code})` : ''}`))
  }
  files.push(file)
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines })
  if (doc.errors.length > 0) {
    throw new ManifestError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? { line: 0, col: 0 }
        return {
          file,
          line: pos.line,
          column: pos.col,
          path: '',
          message: `YAML syntax error: ${firstLine(e.message)}`,
        }
      }),
    )
  }
  const positions = new SourceMap(file)
  const posOf = (node: Node | null | undefined): SourcePosition => {
    const { line, col } = lines.linePos(node?.range?.[0] ?? 0)
    return { file, line, column: col }
  }
  walk(doc.contents, '', posOf, positions)
  // toJS throws for what parsing lets through: an alias to an anchor defined later or never, an
  // alias count past the limit (found by manifest.fuzz.test.ts: a ReferenceError escaped).
  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: 100 }) ?? {}
  } catch (cause) {
    throw new ManifestError([
      { ...posOf(doc.contents), path: '', message: `YAML error: ${firstLine((cause as Error).message)}` },
    ])
  }
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ManifestError([
      { ...posOf(doc.contents), path: '', message: 'a manifest must be a mapping (key: value pairs)' },
    ])
  }
  const own = data as Record<string, unknown>
  const ownPlugins: PluginRef[] = Array.isArray(own.plugins)
    ? own.plugins.map((name, i) => ({
        name: String(name),
        fromFile: file,
        position: positions.at(pointer('/plugins', i)),
      }))
    : []
  const listed = Array.isArray(own.include)
  const includes: unknown[] =
    own.include === undefined ? [] : listed ? (own.include as unknown[]) : [own.include]
  delete own.include
  if (includes.length === 0) return { data: own, positions, plugins: ownPlugins }

  let base: Record<string, unknown> = {}
  const merged = new SourceMap(file)
  const plugins: PluginRef[] = []
  includes.forEach((inc, i) => {
    const incPath = listed ? pointer('/include', i) : '/include'
    const where = positions.at(incPath)
    if (typeof inc !== 'string')
      throw new ManifestError([{ ...where, path: incPath, message: 'include: expected a file path' }])
    const sub = readOne(resolve(dirname(file), inc), [...stack, file], files, where)
    base = mergeInto(base, sub.data, '', merged)
    merged.merge(sub.positions)
    plugins.push(...sub.plugins)
  })
  const result = mergeInto(base, own, '', merged)
  merged.merge(positions)
  const seen = new Set<string>()
  const allPlugins = [...plugins, ...ownPlugins].filter((p) => !seen.has(p.name) && seen.add(p.name))
  if (allPlugins.length > 0) result.plugins = allPlugins.map((p) => p.name)
  return { data: result, positions: merged, plugins: allPlugins }
}

/** Merges `over` onto `base` (objects recursively, anything else replaced), clearing stale positions. */
function mergeInto(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
  path: string,
  positions: SourceMap,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const p = pointer(path, k)
    const b = out[k]
    if (isPlainObject(b) && isPlainObject(v)) out[k] = mergeInto(b, v, p, positions)
    else {
      positions.clear(p)
      out[k] = v
    }
  }
  return out
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function walk(
  node: unknown,
  path: string,
  posOf: (n: Node) => SourcePosition,
  out: SourceMap,
  key?: SourcePosition,
): void {
  if (!node || typeof node !== 'object') return
  out.set(path, posOf(node as Node), key)
  if (isMap(node)) {
    for (const item of node.items) {
      const k = isScalar(item.key) ? String(item.key.value) : String(item.key)
      walk(item.value ?? item.key, pointer(path, k), posOf, out, posOf(item.key as Node))
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      walk(item, pointer(path, i), posOf, out)
    })
  }
}

/** yaml's message without the position and source excerpt it appends (we report those ourselves). */
function firstLine(s: string): string {
  return s
    .split('\n')[0]!
    .replace(/ at line \d+, column \d+:?$/, '')
    .trim()
}
