// The 9P2000.L wire format: message numbers and constants from the Linux kernel's
// include/net/9p/9p.h, layouts from Documentation/filesystems/9p.rst and net/9p/client.c (the
// format strings of each p9_client_* call). Every message is size[4] type[1] tag[2] body,
// little-endian; a string is len[2] + bytes (no NUL); a qid is type[1] version[4] path[8].

/** Message types (include/net/9p/9p.h, enum p9_msg_t); each R-message is its T-message + 1. */
export const Msg = {
  TLERROR: 6,
  RLERROR: 7,
  TSTATFS: 8,
  TLOPEN: 12,
  TLCREATE: 14,
  TSYMLINK: 16,
  TMKNOD: 18,
  TRENAME: 20,
  TREADLINK: 22,
  TGETATTR: 24,
  TSETATTR: 26,
  TXATTRWALK: 30,
  TXATTRCREATE: 32,
  TREADDIR: 40,
  TFSYNC: 50,
  TLOCK: 52,
  TGETLOCK: 54,
  TLINK: 70,
  TMKDIR: 72,
  TRENAMEAT: 74,
  TUNLINKAT: 76,
  TVERSION: 100,
  TAUTH: 102,
  TATTACH: 104,
  TFLUSH: 108,
  TWALK: 110,
  TREAD: 116,
  TWRITE: 118,
  TCLUNK: 120,
  TREMOVE: 122,
} as const

/** The version string this server speaks; anything else is answered "unknown" (9p.rst, Tversion). */
export const VERSION_9P2000_L = '9P2000.L'
export const NOTAG = 0xffff
export const NOFID = 0xffff_ffff
/** n_uname when the client sends none (P9_NONUNAME). */
export const NONUNAME = 0xffff_ffff
/** Twalk carries at most this many names (P9_MAXWELEM). */
export const MAXWELEM = 16
/** size + type + tag. */
export const HEADER_SIZE = 7
/** Rread/Rreaddir header: size type tag count (the kernel's in_hdrlen for zero-copy reads, 11). */
export const RREAD_HEADER = 11
/** Twrite header: size type tag fid[4] offset[8] count[4]. */
export const TWRITE_HEADER = 23

/** qid.type bits (P9_QTDIR, P9_QTSYMLINK). */
export const QidType = { DIR: 0x80, SYMLINK: 0x02, FILE: 0 } as const

/** Tsetattr valid bits (P9_ATTR_*). */
export const SetattrValid = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  CTIME: 1 << 6,
  ATIME_SET: 1 << 7,
  MTIME_SET: 1 << 8,
} as const

/** Rgetattr valid mask for what we fill (P9_STATS_BASIC: mode..blocks). */
export const STATS_BASIC = 0x7ffn

/** Tlock status (P9_LOCK_SUCCESS) and Tgetlock types (P9_LOCK_TYPE_UNLCK). */
export const LOCK_SUCCESS = 0
export const LOCK_TYPE_UNLCK = 2

/** Tunlinkat flags: AT_REMOVEDIR. */
export const AT_REMOVEDIR = 0x200

/** Linux errno numbers the server answers with in Rlerror (asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ESTALE: 116,
} as const

/** A failure answered with Rlerror(errno). */
export class P9Error extends Error {
  constructor(
    readonly errno: number,
    message = `errno ${errno}`,
  ) {
    super(message)
  }
}

export interface Qid {
  type: number
  version: number
  path: bigint
}

const decoder = new TextDecoder('utf-8', { fatal: false })
const encoder = new TextEncoder()

/**
 * Reads a T-message body. Every read is checked against the message's end: a count or string
 * length that runs past it is EPROTO, never a read outside the buffer.
 */
export class Reader {
  private readonly view: DataView
  private at: number

  constructor(
    readonly bytes: Uint8Array,
    start = HEADER_SIZE,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.at = start
  }

  private need(n: number): number {
    const at = this.at
    if (at + n > this.bytes.length) throw new P9Error(Errno.EPROTO, 'message truncated')
    this.at = at + n
    return at
  }

  u8(): number {
    return this.view.getUint8(this.need(1))
  }
  u16(): number {
    return this.view.getUint16(this.need(2), true)
  }
  u32(): number {
    return this.view.getUint32(this.need(4), true)
  }
  u64(): bigint {
    return this.view.getBigUint64(this.need(8), true)
  }
  /** A u64 that must fit a JavaScript number (file offsets, sizes): EOVERFLOW otherwise. */
  offset(): number {
    const v = this.u64()
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new P9Error(Errno.EOVERFLOW, 'offset too large')
    return Number(v)
  }
  /** Raw string bytes (names are checked as bytes: NUL and '/' are refused before decoding). */
  stringBytes(): Uint8Array {
    const n = this.u16()
    const at = this.need(n)
    return this.bytes.subarray(at, at + n)
  }
  string(): string {
    return decoder.decode(this.stringBytes())
  }
  get remaining(): number {
    return this.bytes.length - this.at
  }
}

/** Builds an R-message: reserve the header, append fields, `finish` writes size, type and tag. */
export class Writer {
  private buf: Uint8Array
  private view: DataView
  private at = HEADER_SIZE

  constructor(initial = 256) {
    this.buf = new Uint8Array(Math.max(initial, HEADER_SIZE))
    this.view = new DataView(this.buf.buffer)
  }

  private room(n: number): number {
    if (this.at + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, this.at + n))
      grown.set(this.buf)
      this.buf = grown
      this.view = new DataView(grown.buffer)
    }
    const at = this.at
    this.at += n
    return at
  }

  get length(): number {
    return this.at
  }
  u8(v: number): this {
    const at = this.room(1)
    this.view.setUint8(at, v)
    return this
  }
  u16(v: number): this {
    const at = this.room(2)
    this.view.setUint16(at, v, true)
    return this
  }
  u32(v: number): this {
    const at = this.room(4)
    this.view.setUint32(at, v >>> 0, true)
    return this
  }
  u64(v: bigint | number): this {
    const at = this.room(8)
    this.view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true)
    return this
  }
  bytes(b: Uint8Array): this {
    const at = this.room(b.length) // may replace this.buf
    this.buf.set(b, at)
    return this
  }
  string(s: string | Uint8Array): this {
    const b = typeof s === 'string' ? encoder.encode(s) : s
    if (b.length > 0xffff) throw new P9Error(Errno.ENAMETOOLONG, 'string too long for 9P')
    return this.u16(b.length).bytes(b)
  }
  qid(q: Qid): this {
    return this.u8(q.type).u32(q.version).u64(q.path)
  }
  /** Patches a u32 written earlier (Rreaddir's count). */
  setU32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0, true)
  }
  finish(type: number, tag: number): Uint8Array {
    this.view.setUint32(0, this.at, true)
    this.view.setUint8(4, type)
    this.view.setUint16(5, tag, true)
    return this.buf.subarray(0, this.at)
  }
}

/** Rlerror ecode[4] (9p.rst: the 9P2000.L error reply). */
export function rlerror(tag: number, errno: number): Uint8Array {
  return new Writer(16).u32(errno).finish(Msg.RLERROR, tag)
}

/** The header of a message: its declared size, type and tag. */
export function header(bytes: Uint8Array): { size: number; type: number; tag: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return { size: v.getUint32(0, true), type: v.getUint8(4), tag: v.getUint16(5, true) }
}
