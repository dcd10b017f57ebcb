// The 9P2000.L server against a real temporary directory (run as root, as the VMM is: ownership
// is checked on the host files), with a test client that speaks the wire format.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Errno, MAX_MSIZE, Msg, P9Server, QidType, type Writer } from '../src/devices/9p/index.js'
import { TestClient } from './p9-client.js'

const isRoot = process.getuid?.() === 0
const O_RDONLY = 0
const O_WRONLY = 1
const O_RDWR = 2
const O_TRUNC = 0o1000
const V = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_SET: 128, MTIME_SET: 256 }

let dir: string
let outside: string
let server: P9Server
let c: TestClient

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmm-9p-'))
  outside = mkdtempSync(join(tmpdir(), 'vmm-9p-outside-'))
  writeFileSync(join(outside, 'secret'), 'secret')
  server = new P9Server({ root: dir, readonly: false })
  c = new TestClient(server)
})

afterEach(() => {
  server.close()
  rmSync(dir, { recursive: true, force: true })
  rmSync(outside, { recursive: true, force: true })
})

const errnoOf = (p: Promise<unknown>) =>
  p.then(
    () => 0,
    (e: { errno: number }) => e.errno,
  )

describe('9P2000.L server: session', () => {
  it('negotiates msize (capped at 512 KiB) and answers other versions "unknown"', async () => {
    const r = (await c.version(4 << 20)).r
    expect(r.u32()).toBe(MAX_MSIZE)
    expect(r.string()).toBe('9P2000.L')
    const old = (await c.version(8192, '9P2000')).r
    old.u32()
    expect(old.string()).toBe('unknown')
    // No session after "unknown": everything but Tversion is refused.
    expect(await c.errno(Msg.TATTACH, (w) => w.u32(0).u32(0).string('').string('').u32(0))).toBe(Errno.EPROTO)
  })

  it('refuses requests before Tversion, unknown types, truncated messages and bad fids', async () => {
    expect(await c.errno(Msg.TCLUNK, (w) => w.u32(0))).toBe(Errno.EPROTO)
    await c.start()
    expect(await c.errno(200, () => {})).toBe(Errno.EOPNOTSUPP)
    expect(await c.errno(Msg.TWALK, (w) => w.u32(0).u32(1).u16(2).string('a'))).toBe(Errno.EPROTO)
    expect(await c.errno(Msg.TWALK, (w) => w.u32(0).u32(1).u16(1).u16(500).string('a'))).toBe(Errno.EPROTO)
    expect(await c.errno(Msg.TGETATTR, (w) => w.u32(77).u64(0))).toBe(Errno.EBADF)
    expect(await c.errno(Msg.TCLUNK, (w) => w.u32(77))).toBe(Errno.EBADF)
    expect(await c.errno(Msg.TWALK, (w) => w.u32(0).u32(1).u16(17))).toBe(Errno.EINVAL)
    const short = await server.handle({ message: new Uint8Array(3), readTarget: () => [], replyCapacity: 64 })
    expect(short.bytes[4]).toBe(Msg.RLERROR)
  })

  it('bounds the fids a session holds', async () => {
    const small = new P9Server({ root: dir, readonly: false, maxFids: 4 })
    const s = await new TestClient(small).start()
    for (let i = 1; i < 4; i++) await s.walk(0, i)
    expect(await s.errno(Msg.TWALK, s.walkBody(0, 9, []))).toBe(Errno.ENFILE)
    await s.clunk(3)
    await s.walk(0, 9)
    small.close()
  })

  it('answers Tflush after the flushed request', async () => {
    await c.start()
    const reply = await c.ok(Msg.TFLUSH, (w) => w.u16(1234))
    expect(reply.type).toBe(Msg.TFLUSH + 1)
  })
})

describe.skipIf(!isRoot)('9P2000.L server: files, as root', () => {
  it('creates, writes and reads a file with the requested owner, group and exact mode', async () => {
    await c.start(1000)
    await c.walk(0, 1)
    await c.lcreate(1, 'hello.txt', O_RDWR, 0o100640, 1001)
    expect(await c.write(1, 0, new TextEncoder().encode('hello 9p'))).toBe(8)
    expect(new TextDecoder().decode(await c.read(1, 6, 100))).toBe('9p')
    const st = statSync(join(dir, 'hello.txt'))
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 1001, 0o640])
    await c.mkdir(0, 'd', 0o2777, 1002) // no umask: the guest applied its own
    const d = statSync(join(dir, 'd'))
    expect([d.uid, d.gid, d.mode & 0o7777, d.isDirectory()]).toEqual([1000, 1002, 0o2777, true])
    await c.clunk(1)
  })

  it('opens host files, and gets their attributes', async () => {
    writeFileSync(join(dir, 'host.txt'), 'from the host')
    await c.start()
    expect(await c.walk(0, 1, 'host.txt')).toBe(1)
    await c.lopen(1, O_RDONLY)
    expect(new TextDecoder().decode(await c.read(1, 0, 4096))).toBe('from the host')
    const a = await c.getattr(1)
    expect(a.size).toBe(13n)
    expect(a.qid.type).toBe(QidType.FILE)
    expect(a.mode & 0o170000).toBe(0o100000)
    expect((await c.getattr(0)).qid.type).toBe(QidType.DIR)
    expect(await errnoOf(c.lopen(1, O_RDONLY))).toBe(Errno.EBADF) // already open
    await c.walk(0, 2)
    expect(await errnoOf(c.lopen(2, O_WRONLY))).toBe(Errno.EISDIR)
  })

  it('sets mode, owner, size and times (ATIME_SET/MTIME_SET and now)', async () => {
    writeFileSync(join(dir, 'f'), '0123456789')
    await c.start()
    await c.walk(0, 1, 'f')
    await c.setattr(1, { valid: V.UID | V.GID, uid: 1234, gid: 5678 })
    await c.setattr(1, { valid: V.MODE, mode: 0o4755 })
    await c.setattr(1, { valid: V.SIZE, size: 4 })
    await c.setattr(1, {
      valid: V.ATIME | V.ATIME_SET | V.MTIME | V.MTIME_SET,
      atime: 1_000_000,
      mtime: 2_000_000,
    })
    let st = statSync(join(dir, 'f'))
    expect([st.uid, st.gid, st.mode & 0o7777, st.size]).toEqual([1234, 5678, 0o4755, 4])
    expect([Math.round(st.atimeMs / 1000), Math.round(st.mtimeMs / 1000)]).toEqual([1_000_000, 2_000_000])
    await c.setattr(1, { valid: V.MTIME })
    st = statSync(join(dir, 'f'))
    expect(Math.abs(st.mtimeMs - Date.now())).toBeLessThan(60_000)
    expect(Math.round(st.atimeMs / 1000)).toBe(1_000_000) // untouched
    await c.setattr(1, { valid: V.UID, uid: 0xffff_ffff }) // -1: unchanged
    expect(statSync(join(dir, 'f')).uid).toBe(1234)
  })

  it('lists directories with . and .., in pages, and reads a listing again from offset 0', async () => {
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `file-${i}`), '')
    mkdirSync(join(dir, 'sub'))
    await c.start()
    await c.walk(0, 1)
    await c.lopen(1, O_RDONLY)
    const names: string[] = []
    let offset = 0n
    for (;;) {
      const page = await c.readdir(1, Number(offset), 200)
      if (page.length === 0) break
      names.push(...page.map((e) => e.name))
      offset = page.at(-1)!.offset
    }
    expect(names.sort()).toEqual(
      ['.', '..', 'sub', ...Array.from({ length: 50 }, (_, i) => `file-${i}`)].sort(),
    )
    writeFileSync(join(dir, 'late'), '')
    expect((await c.readdir(1, 0)).map((e) => e.name)).toContain('late')
    const sub = (await c.readdir(1, 0)).find((e) => e.name === 'sub')
    expect(sub?.type).toBe(4)
  })

  it('renames, links, unlinks and removes; a renamed fid follows its file', async () => {
    writeFileSync(join(dir, 'a'), 'A')
    mkdirSync(join(dir, 'dir'))
    await c.start()
    await c.walk(0, 1, 'a')
    await c.walk(0, 2, 'dir')
    await c.renameat(0, 'a', 2, 'b')
    expect(readFileSync(join(dir, 'dir', 'b'), 'utf8')).toBe('A')
    await c.ok(Msg.TLINK, (w) => w.u32(0).u32(1).string('hard'))
    expect(statSync(join(dir, 'hard')).nlink).toBe(2)
    await c.ok(Msg.TRENAME, (w) => w.u32(1).u32(0).string('c')) // the fid's entry moved: dir/b -> c
    expect(existsSync(join(dir, 'c'))).toBe(true)
    await c.ok(Msg.TREMOVE, (w) => w.u32(1))
    expect(existsSync(join(dir, 'c'))).toBe(false)
    expect(await c.errno(Msg.TCLUNK, (w) => w.u32(1))).toBe(Errno.EBADF) // Tremove clunked it
    await c.unlinkat(0, 'hard')
    expect(await errnoOf(c.unlinkat(0, 'dir'))).toBe(21 /* EISDIR */)
    await c.unlinkat(0, 'dir', 0x200)
    expect(existsSync(join(dir, 'dir'))).toBe(false)
  })

  it('makes symlinks it never follows, and reads them back', async () => {
    await c.start(1000)
    await c.symlink(0, 'etc', '/etc', 1000)
    await c.symlink(0, 'up', '../../..', 1000)
    expect(readlinkSync(join(dir, 'etc'))).toBe('/etc')
    expect(lstatSync(join(dir, 'etc')).uid).toBe(1000)
    await c.walk(0, 1, 'etc')
    expect(await c.readlink(1)).toBe('/etc')
    expect(await errnoOf(c.lopen(1, O_RDONLY))).toBe(Errno.ELOOP)
    // Walking through it ends the walk (a partial Rwalk, no newfid): the guest resolves symlinks.
    expect(await c.walk(0, 2, 'etc', 'passwd')).toBe(1)
    expect(await c.errno(Msg.TGETATTR, (w) => w.u32(2).u64(0))).toBe(Errno.EBADF)
    expect(await c.errno(Msg.TWALK, c.walkBody(1, 2, ['passwd']))).toBe(Errno.ENOTDIR)
    // Owner and times of the link itself, never of /etc.
    const etc = statSync('/etc')
    await c.setattr(1, { valid: V.UID | V.MODE, uid: 4321, mode: 0o777 })
    expect(lstatSync(join(dir, 'etc')).uid).toBe(4321)
    expect(statSync('/etc').uid).toBe(etc.uid)
    expect(statSync('/etc').mode).toBe(etc.mode)
  })

  it('answers statfs, fsync, lock, getlock, xattr requests and mknod', async () => {
    await c.start()
    await c.walk(0, 1)
    expect((await c.ok(Msg.TSTATFS, (w) => w.u32(0))).r.remaining).toBe(4 + 4 + 8 * 6 + 4)
    await c.lcreate(1, 'f', O_RDWR, 0o644, 0)
    await c.ok(Msg.TFSYNC, (w) => w.u32(1).u32(1))
    const lock = await c.ok(Msg.TLOCK, (w) => w.u32(1).u8(1).u32(0).u64(0).u64(0).u32(42).string('guest'))
    expect(lock.r.u8()).toBe(0)
    const gl = await c.ok(Msg.TGETLOCK, (w) => w.u32(1).u8(1).u64(5).u64(10).u32(42).string('guest'))
    expect([gl.r.u8(), gl.r.u64(), gl.r.u64(), gl.r.u32(), gl.r.string()]).toEqual([2, 5n, 10n, 42, 'guest'])
    const xa = await c.ok(Msg.TXATTRWALK, (w) => w.u32(0).u32(5).string(''))
    expect(xa.r.u64()).toBe(0n)
    expect((await c.read(5, 0, 100)).length).toBe(0)
    expect(await c.errno(Msg.TXATTRWALK, (w) => w.u32(0).u32(6).string('user.x'))).toBe(Errno.ENODATA)
    expect(await c.errno(Msg.TXATTRCREATE, (w) => w.u32(0).string('user.x').u64(1).u32(0))).toBe(
      Errno.EOPNOTSUPP,
    )
    const mk = (name: string, mode: number) => (w: Writer) =>
      w.u32(0).string(name).u32(mode).u32(8).u32(0).u32(0)
    await c.ok(Msg.TMKNOD, mk('regular', 0o100600))
    expect(statSync(join(dir, 'regular')).isFile()).toBe(true)
    expect(await c.errno(Msg.TMKNOD, mk('sda', 0o060600))).toBe(Errno.EPERM)
    expect(existsSync(join(dir, 'sda'))).toBe(false)
  })
})

describe.skipIf(!isRoot)('9P2000.L server: a hostile client stays inside the share', () => {
  it('keeps .. at the root and refuses names with /, NUL, . or over 255 bytes', async () => {
    await c.start()
    const rootQid = (await c.getattr(0)).qid
    expect(await c.walk(0, 1, '..', '..', '..')).toBe(3)
    expect((await c.getattr(1)).qid).toEqual(rootQid)
    for (const bad of ['../etc', 'a/b', 'x\u0000y', 'n'.repeat(256)])
      expect(await c.errno(Msg.TWALK, c.walkBody(0, 2, [bad]))).toBe(
        bad.length > 255 ? Errno.ENAMETOOLONG : Errno.EINVAL,
      )
    expect(await errnoOf(c.mkdir(0, '..', 0o755, 0))).toBe(Errno.EINVAL)
    expect(await errnoOf(c.lcreate(1, '/etc/x', O_RDWR, 0o644, 0))).toBe(Errno.EINVAL)
    expect(await errnoOf(c.renameat(0, '..', 0, 'x'))).toBe(Errno.EINVAL)
  })

  it('never creates, opens or renames through a symlink to outside, absolute or relative', async () => {
    symlinkSync(outside, join(dir, 'abs'))
    symlinkSync(`../../../../../../../..${outside}`, join(dir, 'rel'))
    symlinkSync(join(outside, 'secret'), join(dir, 'secretlink'))
    await c.start()
    for (const link of ['abs', 'rel']) {
      await c.walk(0, 1, link)
      expect(await errnoOf(c.lcreate(1, 'planted', O_RDWR, 0o644, 0))).toBe(Errno.ENOTDIR)
      expect(await errnoOf(c.mkdir(1, 'planted', 0o755, 0))).toBe(Errno.ENOTDIR)
      await c.clunk(1)
    }
    // Creating over the link's name fails (O_EXCL, O_NOFOLLOW): the target is not opened.
    expect(await errnoOf(c.lcreate(0, 'secretlink', O_RDWR | O_TRUNC, 0o644, 0))).toBe(Errno.EEXIST)
    await c.walk(0, 2, 'secretlink')
    expect(await errnoOf(c.lopen(2, O_RDWR | O_TRUNC))).toBe(Errno.ELOOP)
    await c.setattr(2, { valid: V.SIZE, size: 0 }).catch(() => {})
    await c.renameat(0, 'secretlink', 0, 'moved') // moves the link, not its target
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret')
    expect(readlinkSync(join(dir, 'moved'))).toBe(join(outside, 'secret'))
    expect(existsSync(join(outside, 'planted'))).toBe(false)
  })

  it('a directory swapped for a symlink under a fid keeps the fid on the real directory', async () => {
    mkdirSync(join(dir, 'a'))
    await c.start()
    await c.walk(0, 1, 'a')
    // A host process (or the guest, racing) moves the directory away and puts a symlink there.
    renameSync(join(dir, 'a'), join(dir, 'b'))
    symlinkSync(outside, join(dir, 'a'))
    await c.lcreate(1, 'new', O_RDWR, 0o644, 0)
    expect(existsSync(join(dir, 'b', 'new'))).toBe(true)
    expect(existsSync(join(outside, 'new'))).toBe(false)
  })

  it('refuses every write on a read-only share with EROFS, and still reads', async () => {
    writeFileSync(join(dir, 'f'), 'data')
    mkdirSync(join(dir, 'd'))
    const ro = new P9Server({ root: dir, readonly: true })
    const r = await new TestClient(ro).start()
    await r.walk(0, 1, 'f')
    await r.walk(0, 2)
    await r.walk(0, 3, 'f')
    await r.lopen(3, O_RDONLY)
    expect(new TextDecoder().decode(await r.read(3, 0, 10))).toBe('data')
    expect(await r.errno(Msg.TWRITE, (w) => w.u32(3).u64(0).u32(1).u8(65))).toBe(Errno.EROFS)
    const refused = [
      r.lopen(1, O_WRONLY),
      r.lopen(1, O_RDONLY | O_TRUNC),
      r.lcreate(2, 'x', O_RDWR, 0o644, 0),
      r.mkdir(0, 'x', 0o755, 0),
      r.symlink(0, 'x', 'y', 0),
      r.renameat(0, 'f', 0, 'g'),
      r.unlinkat(0, 'f'),
      r.setattr(1, { valid: V.MODE, mode: 0o600 }),
      r.ok(Msg.TLINK, (w) => w.u32(0).u32(1).string('x')),
      r.ok(Msg.TMKNOD, (w) => w.u32(0).string('x').u32(0o100644).u32(0).u32(0).u32(0)),
      r.ok(Msg.TREMOVE, (w) => w.u32(1)),
    ]
    for (const p of refused) expect(await errnoOf(p)).toBe(Errno.EROFS)
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('data')
    ro.close()
  })
})
