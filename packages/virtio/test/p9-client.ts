// A 9P2000.L client for tests: encodes T-messages with the server's own Writer, hands them to a
// P9Server as the virtio device would (Twrite's payload apart, Tread's data into a target
// buffer), and decodes the replies.
import { expect } from 'vitest'
import { Msg, type P9Server, Reader, Writer } from '../src/devices/9p/index.js'
import type { P9Reply, P9Request } from '../src/devices/9p/session.js'

export interface Reply {
  type: number
  tag: number
  r: Reader
  /** Tread's data. */
  data: Uint8Array
  /** The errno of an Rlerror, else undefined. */
  errno?: number
}

/** A request from raw message bytes, as the device builds it (Twrite split after its header). */
export function plainRequest(message: Uint8Array, capacity = 1 << 20, target?: Uint8Array): P9Request {
  const isWrite = message.length >= 23 && message[4] === Msg.TWRITE
  return {
    message: isWrite ? message.subarray(0, 23) : message,
    data: isWrite ? [message.subarray(23)] : undefined,
    readTarget: (count) => (target ? [target.subarray(0, Math.min(count, target.length))] : []),
    replyCapacity: capacity,
  }
}

export function decode(reply: P9Reply, target?: Uint8Array): Reply {
  const b = reply.bytes
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const type = v.getUint8(4)
  const tag = v.getUint16(5, true)
  const r = new Reader(b)
  const errno = type === Msg.RLERROR ? new Reader(b).u32() : undefined
  return { type, tag, r, data: target ? target.subarray(0, reply.data) : new Uint8Array(), errno }
}

export class TestClient {
  private nextTag = 1
  constructor(readonly server: P9Server) {}

  async rpc(type: number, body: (w: Writer) => void, readSize = 0): Promise<Reply> {
    const w = new Writer()
    body(w)
    const tag = this.nextTag++ & 0x7fff
    const message = w.finish(type, tag)
    const target = readSize > 0 ? new Uint8Array(readSize) : undefined
    return decode(await this.server.handle(plainRequest(message, 1 << 20, target)), target)
  }

  /** The reply, or throws with the errno of an Rlerror. */
  async ok(type: number, body: (w: Writer) => void, readSize = 0): Promise<Reply> {
    const reply = await this.rpc(type, body, readSize)
    if (reply.errno !== undefined)
      throw Object.assign(new Error(`errno ${reply.errno}`), { errno: reply.errno })
    if (reply.type !== type + 1) throw new Error(`reply type ${reply.type} to ${type}`)
    return reply
  }

  /** The errno a request fails with (throws if it succeeds). */
  async errno(type: number, body: (w: Writer) => void): Promise<number> {
    const reply = await this.rpc(type, body)
    if (reply.errno === undefined) throw new Error(`type ${type} succeeded`)
    return reply.errno
  }

  version(msize = 512 * 1024, version = '9P2000.L') {
    return this.ok(Msg.TVERSION, (w) => w.u32(msize).string(version))
  }

  attach(fid: number, uid = 0) {
    return this.ok(Msg.TATTACH, (w) => w.u32(fid).u32(0xffff_ffff).string('root').string('').u32(uid))
  }

  /** Version + attach fid 0. */
  async start(uid = 0): Promise<this> {
    await this.version()
    await this.attach(0, uid)
    return this
  }

  walkBody(fid: number, newfid: number, names: (string | Uint8Array)[]) {
    return (w: Writer) => {
      w.u32(fid).u32(newfid).u16(names.length)
      for (const n of names) w.string(n)
    }
  }

  async walk(fid: number, newfid: number, ...names: string[]): Promise<number> {
    const r = (await this.ok(Msg.TWALK, this.walkBody(fid, newfid, names))).r
    return r.u16()
  }

  lopen(fid: number, flags: number) {
    return this.ok(Msg.TLOPEN, (w) => w.u32(fid).u32(flags))
  }

  lcreate(fid: number, name: string, flags: number, mode: number, gid: number) {
    return this.ok(Msg.TLCREATE, (w) => w.u32(fid).string(name).u32(flags).u32(mode).u32(gid))
  }

  async write(fid: number, offset: number, data: Uint8Array): Promise<number> {
    const r = (await this.ok(Msg.TWRITE, (w) => w.u32(fid).u64(offset).u32(data.length).bytes(data))).r
    return r.u32()
  }

  async read(fid: number, offset: number, count: number): Promise<Uint8Array> {
    const reply = await this.ok(Msg.TREAD, (w) => w.u32(fid).u64(offset).u32(count), count)
    expect(reply.r.u32()).toBe(reply.data.length)
    return reply.data
  }

  clunk(fid: number) {
    return this.ok(Msg.TCLUNK, (w) => w.u32(fid))
  }

  async getattr(fid: number) {
    const r = (await this.ok(Msg.TGETATTR, (w) => w.u32(fid).u64(0x3fff))).r
    const valid = r.u64()
    const qid = { type: r.u8(), version: r.u32(), path: r.u64() }
    const a = { valid, qid, mode: r.u32(), uid: r.u32(), gid: r.u32(), nlink: r.u64(), rdev: r.u64() }
    const b = { size: r.u64(), blksize: r.u64(), blocks: r.u64(), atime: r.u64(), atimeNs: r.u64() }
    return { ...a, ...b, mtime: r.u64(), mtimeNs: r.u64() }
  }

  setattr(
    fid: number,
    a: {
      valid: number
      mode?: number
      uid?: number
      gid?: number
      size?: number
      atime?: number
      mtime?: number
    },
  ) {
    return this.ok(Msg.TSETATTR, (w) =>
      w
        .u32(fid)
        .u32(a.valid)
        .u32(a.mode ?? 0)
        .u32(a.uid ?? 0)
        .u32(a.gid ?? 0)
        .u64(a.size ?? 0)
        .u64(a.atime ?? 0)
        .u64(0)
        .u64(a.mtime ?? 0)
        .u64(0),
    )
  }

  async readdir(
    fid: number,
    offset = 0,
    count = 8192,
  ): Promise<{ name: string; offset: bigint; type: number }[]> {
    const r = (await this.ok(Msg.TREADDIR, (w) => w.u32(fid).u64(offset).u32(count))).r
    const n = r.u32()
    const out: { name: string; offset: bigint; type: number }[] = []
    const end = r.remaining - n
    while (r.remaining > end) {
      r.u8()
      r.u32()
      r.u64()
      const off = r.u64()
      const type = r.u8()
      out.push({ name: r.string(), offset: off, type })
    }
    return out
  }

  mkdir(dfid: number, name: string, mode: number, gid: number) {
    return this.ok(Msg.TMKDIR, (w) => w.u32(dfid).string(name).u32(mode).u32(gid))
  }

  symlink(dfid: number, name: string, target: string, gid: number) {
    return this.ok(Msg.TSYMLINK, (w) => w.u32(dfid).string(name).string(target).u32(gid))
  }

  async readlink(fid: number): Promise<string> {
    return (await this.ok(Msg.TREADLINK, (w) => w.u32(fid))).r.string()
  }

  renameat(od: number, on: string, nd: number, nn: string) {
    return this.ok(Msg.TRENAMEAT, (w) => w.u32(od).string(on).u32(nd).string(nn))
  }

  unlinkat(dfid: number, name: string, flags = 0) {
    return this.ok(Msg.TUNLINKAT, (w) => w.u32(dfid).string(name).u32(flags))
  }
}
