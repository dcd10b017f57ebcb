// A 9P2000.L file server over one host directory (Linux Documentation/filesystems/9p.rst; message
// layouts from include/net/9p/9p.h and net/9p/client.c; QEMU's hw/9pfs read as a reference).
// Independent of virtio: the device hands it one request at a time, and requests complete in any
// order (9P matches replies by tag). Every failure is an Rlerror with a Linux errno; nothing a
// client sends can throw out of handle().
import type * as fs from 'node:fs'
import type { SavedState } from '@vmm/core'
import { dirOps } from './dir-ops.js'
import { fileOps } from './file-ops.js'
import { checkName, errnoOf, type HostNode, kindOf, openNode, openRoot } from './host.js'
import {
  Errno,
  HEADER_SIZE,
  header,
  MAXWELEM,
  Msg,
  NONUNAME,
  NOTAG,
  P9Error,
  type Qid,
  Reader,
  rlerror,
  VERSION_9P2000_L,
  Writer,
} from './protocol.js'
import {
  closeOpen,
  type Fid,
  Hold,
  type Op,
  type P9Reply,
  type P9Request,
  qidTypeOfKind,
  type Session,
} from './session.js'
import { restoreSession, type SessionState, saveSession } from './state.js'

/** The largest msize we agree to: 512 KiB, as the Linux client allows for virtio (VIRTIO_MAX_MSIZE is larger). */
export const MAX_MSIZE = 512 * 1024
/** The smallest msize that still carries a useful Rread / Rreaddir (the kernel refuses below 4096). */
export const MIN_MSIZE = 4096
/** Fids one session may hold: each pins a host descriptor. */
export const DEFAULT_MAX_FIDS = 4096

export interface P9ServerOptions {
  /** The shared host directory. */
  root: string
  readonly: boolean
  maxFids?: number
  maxMsize?: number
}

export class P9Server implements Session {
  readonly root: HostNode
  readonly readonly: boolean
  readonly live = new Set<HostNode>()
  msize = 0
  private readonly fids = new Map<number, Fid>()
  private readonly inFlight = new Map<number, Promise<unknown>>()
  private readonly maxFids: number
  private readonly maxMsize: number
  private readonly ops: Record<number, Op>

  constructor(options: P9ServerOptions) {
    this.root = openRoot(options.root, this.live)
    this.readonly = options.readonly
    this.maxFids = options.maxFids ?? DEFAULT_MAX_FIDS
    this.maxMsize = Math.max(MIN_MSIZE, Math.min(options.maxMsize ?? MAX_MSIZE, MAX_MSIZE))
    this.ops = {
      [Msg.TATTACH]: (_s, r, w) => this.attach(r, w),
      [Msg.TWALK]: (_s, r, w, _q, hold) => this.walk(r, w, hold),
      [Msg.TCLUNK]: async (_s, r, w) => {
        const n = r.u32()
        if (!this.fids.has(n)) throw new P9Error(Errno.EBADF, 'unknown fid')
        this.clunk(n)
        return w
      },
      [Msg.TFLUSH]: async (_s, r, w) => {
        // 9p.rst / intro(5): Rflush comes after the flushed request's own reply. Host I/O in flight
        // cannot be cancelled, so wait for it to finish (as QEMU does), then answer.
        await this.inFlight.get(r.u16())
        return w
      },
      [Msg.TAUTH]: async () => {
        throw new P9Error(Errno.EOPNOTSUPP, 'no authentication')
      },
      ...fileOps,
      ...dirOps,
    }
  }

  /** Number of fids the session holds (for tests and limits). */
  get fidCount(): number {
    return this.fids.size
  }

  /** Answers one request; never rejects. */
  async handle(req: P9Request): Promise<P9Reply> {
    const m = req.message
    if (m.length < HEADER_SIZE) return { bytes: rlerror(NOTAG, Errno.EPROTO), data: 0 }
    const { type, tag } = header(m)
    const previous = this.inFlight.get(tag)
    const run = this.run(type, tag, req)
    // A tag reused while its first request runs breaks the protocol; keep the first for Tflush.
    if (!previous) this.inFlight.set(tag, run)
    try {
      return await run
    } finally {
      if (this.inFlight.get(tag) === run) this.inFlight.delete(tag)
    }
  }

  private async run(type: number, tag: number, req: P9Request): Promise<P9Reply> {
    const hold = new Hold(this.live)
    try {
      if (type === Msg.TVERSION) return { bytes: this.version(new Reader(req.message), tag), data: 0 }
      if (this.msize === 0) throw new P9Error(Errno.EPROTO, 'Tversion first')
      const op = this.ops[type]
      if (!op) throw new P9Error(Errno.EOPNOTSUPP, `message type ${type}`)
      const result = await op(this, new Reader(req.message), new Writer(), req, hold)
      const [writer, data] = result instanceof Writer ? [result, 0] : [result.writer, result.data]
      const bytes = writer.finish(type + 1, tag)
      if (bytes.length + data > req.replyCapacity) throw new P9Error(Errno.EPROTO, 'reply does not fit')
      // size[4] counts the whole message, data placed after the header included (Rread): Linux's
      // p9_parse_header refuses a size other than the used length the transport reported.
      new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, bytes.length + data, true)
      return { bytes, data }
    } catch (e) {
      if (process.env.VMM_9P_DEBUG) console.error(e)
      return { bytes: rlerror(tag, errnoOf(e)), data: 0 }
    } finally {
      hold.release()
    }
  }

  /** Tversion msize[4] version[s]: negotiates msize and starts a fresh session (all fids clunked). */
  private version(r: Reader, tag: number): Uint8Array {
    const msize = r.u32()
    const version = r.string()
    for (const n of [...this.fids.keys()]) this.clunk(n)
    const w = new Writer()
    // 9p.rst: a version the server does not speak is answered "unknown"; the session stays closed.
    if (!version.startsWith(VERSION_9P2000_L) || msize < MIN_MSIZE) {
      this.msize = 0
      return w
        .u32(Math.max(msize, 0))
        .string('unknown')
        .finish(Msg.TVERSION + 1, tag)
    }
    this.msize = Math.min(msize, this.maxMsize)
    return w
      .u32(this.msize)
      .string(VERSION_9P2000_L)
      .finish(Msg.TVERSION + 1, tag)
  }

  /** Tattach fid[4] afid[4] uname[s] aname[s] n_uname[4] -> qid: the root of the share. */
  private async attach(r: Reader, w: Writer): Promise<Writer> {
    const n = r.u32()
    r.u32() // afid: no authentication
    r.string() // uname: the numeric n_uname decides (9P2000.L)
    r.string() // aname: one tree per device
    const uid = r.remaining >= 4 ? r.u32() : NONUNAME
    if (this.fids.has(n)) throw new P9Error(Errno.EBADF, 'fid in use')
    this.setFid(n, { node: this.root.ref(), uid: uid === NONUNAME ? 0 : uid })
    return w.qid(this.qid(this.root))
  }

  /**
   * Twalk fid[4] newfid[4] nwname[2] nwname*(wname[s]) -> nwqid[2] nwqid*(qid): one component at
   * a time, each opened O_PATH|O_NOFOLLOW inside the previous one; '..' goes to the node's own
   * parent and stays at the root; a symlink or file in the middle of the walk ends it (the guest
   * resolves symlinks itself, through Treadlink). Partial walks return the qids that worked.
   */
  private async walk(r: Reader, w: Writer, hold: Hold): Promise<Writer> {
    const fidN = r.u32()
    const newN = r.u32()
    const count = r.u16()
    if (count > MAXWELEM) throw new P9Error(Errno.EINVAL, 'too many names in Twalk')
    const names: Uint8Array[] = []
    for (let i = 0; i < count; i++) names.push(r.stringBytes())
    const from = this.fid(fidN, hold)
    if (newN !== fidN && this.fids.has(newN)) throw new P9Error(Errno.EBADF, 'newfid in use')
    const qids: Qid[] = []
    let cur = from.node.ref()
    try {
      for (const bytes of names) {
        let next: HostNode
        try {
          if (cur.kind !== 'dir') throw new P9Error(Errno.ENOTDIR, 'walk through a non-directory')
          const dots = bytes.length <= 2 && bytes.every((b) => b === 0x2e)
          if (dots && bytes.length === 2) next = (cur.parent ?? cur).ref()
          else if (dots && bytes.length === 1) next = cur.ref()
          else next = await openNode(cur, checkName(bytes), this.live)
        } catch (e) {
          if (qids.length === 0) throw e
          break
        }
        cur.release(this.live)
        cur = next
        qids.push(this.qid(cur))
      }
    } catch (e) {
      cur.release(this.live)
      throw e
    }
    if (qids.length === names.length) {
      // A complete walk makes newfid (replacing fid when they are the same number).
      try {
        this.setFid(newN, { node: cur, uid: from.uid })
      } catch (e) {
        cur.release(this.live)
        throw e
      }
    } else cur.release(this.live)
    w.u16(qids.length)
    for (const q of qids) w.qid(q)
    return w
  }

  fid(n: number, hold: Hold): Fid {
    const f = this.fids.get(n)
    if (!f) throw new P9Error(Errno.EBADF, `unknown fid ${n}`)
    if (f.stale) throw new P9Error(Errno.ESTALE, `fid ${n} was not found again at restore`)
    hold.node(f.node)
    if (f.open) hold.open(f.open)
    return f
  }

  setFid(n: number, fid: Fid): void {
    if (this.fids.has(n)) this.clunk(n)
    else if (this.fids.size >= this.maxFids) throw new P9Error(Errno.ENFILE, 'too many fids')
    this.fids.set(n, fid)
  }

  clunk(n: number): void {
    const f = this.fids.get(n)
    if (!f) return
    this.fids.delete(n)
    f.clunked = true
    if (f.open) closeOpen(f.open)
    f.node.release(this.live)
  }

  qid(node: HostNode): Qid {
    return this.qidOfStat({ mode: 0n, ino: node.ino, dev: node.dev }, qidTypeOfKind(node.kind))
  }

  qidOfStat(s: Pick<fs.BigIntStats, 'mode' | 'ino' | 'dev'>, type?: number): Qid {
    const t = type ?? qidTypeOfKind(kindOf(s.mode))
    const path = s.dev === this.root.dev ? s.ino : BigInt.asUintN(64, s.ino ^ (s.dev << 48n))
    return { type: t, version: 0, path }
  }

  nodes(): Iterable<HostNode> {
    return this.live
  }

  /** The session for a snapshot (nothing may be in flight: the device is paused). */
  saveState(): SessionState {
    if (this.inFlight.size > 0) throw new Error('virtio-9p: requests in flight at the snapshot')
    return saveSession(this.root, this.msize, this.fids, this.live)
  }

  /** Puts a saved session back: its fids are walked again from the root (state.ts). */
  restoreState(s: SavedState): void {
    const limits = { maxFids: this.maxFids, maxMsize: this.maxMsize }
    const { msize, fids } = restoreSession(s, this.root, this.live, limits)
    for (const n of [...this.fids.keys()]) this.clunk(n)
    this.msize = msize
    for (const [n, f] of fids) this.fids.set(n, f)
  }

  /** Drops every fid and the root (the device is going away). */
  close(): void {
    for (const n of [...this.fids.keys()]) this.clunk(n)
    this.root.release(this.live)
  }
}
