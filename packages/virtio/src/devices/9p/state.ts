// A 9P session in a snapshot: the negotiated msize and each fid as the path of names from the
// root that reaches it (plus its user and how it was open). Host descriptors cannot be saved, so
// a restore walks each path again, one component at a time with O_PATH|O_NOFOLLOW as a Twalk
// would, and reopens open fids with their flags (never O_TRUNC or O_CREAT again). A fid whose
// path no longer reaches a file (removed, or replaced meanwhile), or whose file had lost its name
// already at the snapshot, comes back stale: every request on it but Tclunk answers ESTALE,
// which Linux's 9p client passes to the program as it would for a file deleted under it.
import * as fs from 'node:fs'
import type { SavedState } from '@vmm/core'
import { checkName, HostNode, kindOf, O_PATH } from './host.js'
import type { Fid } from './session.js'

export interface FidState {
  fid: number
  uid: number
  /** Names from the root joined by '/' ('' for the root itself). */
  path: string
  /** The host open flags, or null when not open. */
  open: number | null
  xattr: boolean
  stale: boolean
}

export interface SessionState {
  msize: number
  count: number
  fids: FidState[]
}

const { O_NOFOLLOW, O_TRUNC, O_CREAT, O_EXCL } = fs.constants

/** The names from the root to `node`. */
function namesOf(node: HostNode): string[] {
  const names: string[] = []
  for (let n: HostNode | undefined = node; n?.parent; n = n.parent) names.unshift(n.name)
  return names
}

/** Walks `names` from `root` as Twalk does, synchronously (snapshot and restore are not on the I/O path). */
function walkSync(root: HostNode, names: readonly string[], live: Set<HostNode>): HostNode {
  let cur = root.ref()
  try {
    for (const name of names) {
      if (cur.kind !== 'dir') throw new Error('not a directory')
      const fd = fs.openSync(cur.child(name), O_PATH | O_NOFOLLOW)
      let s: fs.BigIntStats
      try {
        s = fs.fstatSync(fd, { bigint: true })
      } catch (e) {
        fs.closeSync(fd)
        throw e
      }
      const next = new HostNode(fd, cur, name, s.ino, s.dev, kindOf(s.mode)) // takes cur's reference
      live.add(next)
      cur = next
    }
    return cur
  } catch (e) {
    cur.release(live)
    throw e
  }
}

/** Whether `names` from the root still reach `node`'s inode. */
function reaches(root: HostNode, names: readonly string[], node: HostNode, live: Set<HostNode>): boolean {
  try {
    const found = walkSync(root, names, live)
    const same = found.ino === node.ino && found.dev === node.dev
    found.release(live)
    return same
  } catch {
    return false
  }
}

export function saveSession(
  root: HostNode,
  msize: number,
  fids: ReadonlyMap<number, Fid>,
  live: Set<HostNode>,
): SessionState {
  const out: FidState[] = []
  for (const [fid, f] of fids) {
    const names = namesOf(f.node)
    out.push({
      fid,
      uid: f.uid,
      path: names.join('/'),
      open: f.open && !f.open.closed ? f.open.flags : null,
      xattr: f.xattr === true,
      stale: f.stale === true || !reaches(root, names, f.node, live),
    })
  }
  return { msize, count: out.length, fids: out }
}

/** Reads a saved session back (untrusted: every field is checked first) and reopens its fids. */
export function restoreSession(
  s: SavedState,
  root: HostNode,
  live: Set<HostNode>,
  limits: { maxFids: number; maxMsize: number },
): { msize: number; fids: Map<number, Fid> } {
  s.only('msize', 'count', 'fids')
  const msize = s.int('msize', 0, limits.maxMsize)
  const seen = new Set<number>()
  const saved = s.list('fids', s.int('count', 0, limits.maxFids)).map((f) => {
    f.only('fid', 'uid', 'path', 'open', 'xattr', 'stale')
    const path = f.string('path', /^[^\0]*$/, 1 << 16)
    const names = path === '' ? [] : path.split('/')
    for (const n of names) {
      try {
        checkName(Buffer.from(n))
      } catch {
        f.refuse('path', `${JSON.stringify(n)} is not a file name`)
      }
    }
    const fid = f.int('fid', 0, 0xffff_ffff)
    if (seen.has(fid)) f.refuse('fid', `fid ${fid} appears twice`)
    seen.add(fid)
    return {
      fid,
      uid: f.int('uid', 0, 0xffff_ffff),
      names,
      open: f.isNull('open') ? null : f.int('open', 0, 0x7fff_ffff),
      xattr: f.bool('xattr'),
      stale: f.bool('stale'),
    }
  })
  const fids = new Map<number, Fid>()
  for (const f of saved) {
    let fid: Fid
    try {
      if (f.stale) throw new Error('stale at the snapshot')
      const node = walkSync(root, f.names, live)
      fid = { node, uid: f.uid, xattr: f.xattr || undefined }
      if (f.open !== null) {
        try {
          const flags = f.open & ~(O_TRUNC | O_CREAT | O_EXCL)
          const fd = fs.openSync(node.path, flags)
          fid.open = { fd, dir: node.kind === 'dir', flags, users: 0, closed: false }
        } catch (e) {
          node.release(live)
          throw e
        }
      }
    } catch {
      fid = { node: root.ref(), uid: f.uid, stale: true }
    }
    fids.set(f.fid, fid)
  }
  return { msize, fids }
}
