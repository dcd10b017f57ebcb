// A snapshot directory (docs/snapshot.md "Files"): three files.
//   snapshot.json  the header: format name, version, and for each other file its size and the
//                  SHA-256 of the state (guest RAM is not hashed: hashing GiBs would cost the
//                  restore what MAP_PRIVATE saves; its size is checked instead).
//   state.json     the state (codec.ts): pinned manifest, vCPUs, VM, components.
//   memory         guest RAM, byte for byte from the start of the machine's RAM mapping.
// It is written under a temporary name beside its final one and renamed last, so a snapshot that
// fails half-way never leaves a directory that looks complete, and nothing existing is overwritten.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { decodeState, encodeState, SnapshotError } from './codec.js'

export const SNAPSHOT_FORMAT = 'vmm-snapshot'
/** Bumped on any change a reader of the previous version would misread. */
export const SNAPSHOT_VERSION = 1

export interface SnapshotHeader {
  format: typeof SNAPSHOT_FORMAT
  version: number
  state: { file: 'state.json'; bytes: number; sha256: string }
  memory: { file: 'memory'; bytes: number }
}

/**
 * Writes `state` and the RAM `chunks` as snapshot directory `dir`, which must not exist yet.
 * Throws with nothing left behind when any step fails.
 */
export function writeSnapshot(dir: string, state: unknown, chunks: readonly Uint8Array[]): SnapshotHeader {
  if (fs.existsSync(dir)) throw new SnapshotError(dir, 'already exists; a snapshot never overwrites anything')
  const temp = path.join(path.dirname(dir), `.${path.basename(dir)}.partial-${process.pid}`)
  fs.mkdirSync(temp)
  try {
    const text = Buffer.from(encodeState(state))
    const memoryFile = path.join(temp, 'memory')
    const fd = fs.openSync(memoryFile, 'wx')
    let bytes = 0
    try {
      for (const c of chunks) {
        // Zero pages become holes: a mostly idle guest's RAM file is mostly sparse.
        bytes += writeSparse(fd, c, bytes)
      }
      fs.ftruncateSync(fd, bytes)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.writeFileSync(path.join(temp, 'state.json'), text, { flag: 'wx' })
    const header: SnapshotHeader = {
      format: SNAPSHOT_FORMAT,
      version: SNAPSHOT_VERSION,
      state: { file: 'state.json', bytes: text.length, sha256: sha256(text) },
      memory: { file: 'memory', bytes },
    }
    fs.writeFileSync(path.join(temp, 'snapshot.json'), `${JSON.stringify(header, null, 2)}\n`, { flag: 'wx' })
    fs.renameSync(temp, dir)
    return header
  } catch (e) {
    fs.rmSync(temp, { recursive: true, force: true })
    throw e
  }
}

const PAGE = 4096

/** Writes `data` at `offset`, skipping all-zero pages (they read back as zero from the hole). */
function writeSparse(fd: number, data: Uint8Array, offset: number): number {
  const words = new BigUint64Array(data.buffer, data.byteOffset, Math.floor(data.byteLength / 8))
  let run = -1
  const flush = (end: number) => {
    if (run >= 0) fs.writeSync(fd, data, run, end - run, offset + run)
    run = -1
  }
  for (let p = 0; p < data.byteLength; p += PAGE) {
    let zero = true
    for (let w = p / 8, e = Math.min(words.length, (p + PAGE) / 8); w < e; w++)
      if (words[w] !== 0n) {
        zero = false
        break
      }
    if (zero) flush(p)
    else if (run < 0) run = p
  }
  flush(data.byteLength)
  return data.byteLength
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex')
}

export interface ReadSnapshot {
  header: SnapshotHeader
  state: unknown
  /** The memory file's path (for a MAP_PRIVATE mapping) and size. */
  memoryFile: string
  memoryBytes: number
}

/**
 * Reads and checks snapshot directory `dir`: the header's format and version, the state's size and
 * checksum, the memory file's size. Every failure names the file and what is wrong with it.
 */
export function readSnapshot(dir: string): ReadSnapshot {
  const headerFile = path.join(dir, 'snapshot.json')
  if (!fs.existsSync(dir)) throw new SnapshotError(dir, 'no such snapshot directory')
  if (!fs.existsSync(headerFile))
    throw new SnapshotError(
      headerFile,
      'missing: not a snapshot directory, or one whose writing did not finish',
    )
  const header = parseHeader(fs.readFileSync(headerFile, 'utf8'), headerFile)
  const stateFile = path.join(dir, header.state.file)
  const text = readOrFail(stateFile)
  if (text.length !== header.state.bytes)
    throw new SnapshotError(
      stateFile,
      `is ${text.length} bytes, the header says ${header.state.bytes}: truncated or changed`,
    )
  if (sha256(text) !== header.state.sha256)
    throw new SnapshotError(
      stateFile,
      'checksum mismatch (SHA-256 differs from snapshot.json): corrupted or changed',
    )
  const memoryFile = path.join(dir, header.memory.file)
  const size = statOrFail(memoryFile).size
  if (size !== header.memory.bytes)
    throw new SnapshotError(
      memoryFile,
      `is ${size} bytes, the header says ${header.memory.bytes}: truncated or changed`,
    )
  return { header, state: decodeState(text.toString('utf8'), stateFile), memoryFile, memoryBytes: size }
}

/** The header, checked field by field (untrusted). */
export function parseHeader(text: string, file: string): SnapshotHeader {
  let h: unknown
  try {
    h = JSON.parse(text)
  } catch (cause) {
    throw new SnapshotError(file, `not JSON (${(cause as Error).message})`, { cause })
  }
  const o = h as Partial<SnapshotHeader> | null
  if (typeof o !== 'object' || o === null || o.format !== SNAPSHOT_FORMAT)
    throw new SnapshotError(file, `not a ${SNAPSHOT_FORMAT} header (no "format": "${SNAPSHOT_FORMAT}")`)
  if (o.version !== SNAPSHOT_VERSION)
    throw new SnapshotError(
      file,
      `format version ${JSON.stringify(o.version)}; this vmm reads version ${SNAPSHOT_VERSION} only`,
    )
  const s = o.state
  if (
    typeof s !== 'object' ||
    s === null ||
    s.file !== 'state.json' ||
    !Number.isSafeInteger(s.bytes) ||
    s.bytes < 0 ||
    typeof s.sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(s.sha256)
  )
    throw new SnapshotError(file, '"state" must be {file: "state.json", bytes, sha256 (64 hex digits)}')
  const m = o.memory
  if (
    typeof m !== 'object' ||
    m === null ||
    m.file !== 'memory' ||
    !Number.isSafeInteger(m.bytes) ||
    m.bytes < 0
  )
    throw new SnapshotError(file, '"memory" must be {file: "memory", bytes}')
  return o as SnapshotHeader
}

function readOrFail(file: string): Buffer {
  try {
    return fs.readFileSync(file)
  } catch (cause) {
    throw new SnapshotError(file, `cannot be read (${(cause as NodeJS.ErrnoException).code})`, { cause })
  }
}

function statOrFail(file: string): fs.Stats {
  try {
    return fs.statSync(file)
  } catch (cause) {
    throw new SnapshotError(file, `cannot be read (${(cause as NodeJS.ErrnoException).code})`, { cause })
  }
}
