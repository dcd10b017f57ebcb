// What every 9P operation shares: the fid table of one session, what a request holds while it
// runs, and the reply types. The operations live in file-ops.ts and dir-ops.ts; the dispatch in
// server.ts.
import * as fs from 'node:fs'
import type { HostNode } from './host.js'
import { Errno, P9Error, type Qid, QidType, type Reader, type Writer } from './protocol.js'

/** A directory listing read on the first Treaddir of an open directory, served by offset after. */
export interface DirEntry {
  qid: Qid
  type: number
  name: Uint8Array
}

/** An opened fid's host descriptor: closed only when no request in flight still uses it. */
export interface OpenFile {
  fd: number
  dir: boolean
  /** The host open(2) flags, for a reopen at restore. */
  flags: number
  users: number
  closed: boolean
  entries?: DirEntry[]
}

/** One fid (9p.rst): the node it names, the user it acts for (the attach's n_uname), and how it is open. */
export interface Fid {
  node: HostNode
  uid: number
  open?: OpenFile
  /** A fid made by Txattrwalk: reads the (always empty) attribute list. */
  xattr?: boolean
  /** Set by clunk: an operation that awaited meanwhile must not attach anything to it. */
  clunked?: boolean
  /** A fid a restore could not reopen: everything but Tclunk answers ESTALE. */
  stale?: boolean
}

/** One request as its transport hands it over. */
export interface P9Request {
  /** The whole T-message; for Twrite only its 23-byte header (the payload is in `data`). */
  readonly message: Uint8Array
  /** Twrite's payload, as views of guest memory. */
  readonly data?: readonly Uint8Array[]
  /** Where Tread's bytes go: views of the reply buffer after the 11-byte Rread header, `count` bytes at most. */
  readTarget(count: number): Uint8Array[]
  /** The bytes the reply may take. */
  readonly replyCapacity: number
}

/** The reply bytes, and how many data bytes were already placed after them (Rread). */
export interface P9Reply {
  readonly bytes: Uint8Array
  readonly data: number
}

/** What an operation returns: the body of its R-message (its header is written by the server). */
export type OpResult = Writer | { writer: Writer; data: number }

/** The references a request takes on nodes and open files, dropped when it completes. */
export class Hold {
  private readonly nodes: HostNode[] = []
  private readonly opens: OpenFile[] = []
  constructor(private readonly live: Set<HostNode>) {}

  node(n: HostNode): HostNode {
    this.nodes.push(n.ref())
    return n
  }

  open(o: OpenFile): OpenFile {
    o.users++
    this.opens.push(o)
    return o
  }

  release(): void {
    for (const n of this.nodes.splice(0)) n.release(this.live)
    for (const o of this.opens.splice(0)) {
      o.users--
      if (o.closed && o.users === 0) fs.close(o.fd, () => {})
    }
  }
}

/** Marks an open file closed; its descriptor goes once its last user is done. */
export function closeOpen(o: OpenFile): void {
  if (o.closed) return
  o.closed = true
  if (o.users === 0) fs.close(o.fd, () => {})
}

/** What the operations see of the server. */
export interface Session {
  readonly root: HostNode
  readonly readonly: boolean
  readonly live: Set<HostNode>
  readonly msize: number
  /** The fid, held for the request; EBADF when unknown. */
  fid(n: number, hold: Hold): Fid
  /** Adds (or replaces, for n === a fid being reused by a walk) a fid; ENFILE past the limit. */
  setFid(n: number, fid: Fid): void
  /** Forgets a fid: closes its open file, drops its node. */
  clunk(n: number): void
  /** The qid of a node. */
  qid(node: HostNode): Qid
  /** Qid of a stat result. */
  qidOfStat(s: fs.BigIntStats): Qid
  /** Every live node: a rename moves the ones it renamed. */
  nodes(): Iterable<HostNode>
}

export type Op = (s: Session, r: Reader, w: Writer, req: P9Request, hold: Hold) => Promise<OpResult>

/** EROFS for a write-type request on a read-only share. */
export function writable(s: Session): void {
  if (s.readonly) throw new P9Error(Errno.EROFS, 'read-only share')
}

export function dirFid(s: Session, n: number, hold: Hold): Fid {
  const f = s.fid(n, hold)
  if (f.node.kind !== 'dir') throw new P9Error(Errno.ENOTDIR, 'not a directory')
  return f
}

export const qidTypeOfKind = (kind: string): number =>
  kind === 'dir' ? QidType.DIR : kind === 'symlink' ? QidType.SYMLINK : QidType.FILE
