// 9P2000.L operations on files and their attributes: Tlopen, Tlcreate, Tread, Twrite, Tgetattr,
// Tsetattr, Treaddir, Tfsync, Tstatfs, Tlock, Tgetlock, Txattrwalk, Txattrcreate. Layouts from
// Documentation/filesystems/9p.rst and the format strings in net/9p/client.c.
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import {
  checkName,
  fstatAsync,
  type HostNode,
  lstatAsync,
  nodeFromFd,
  openAsync,
  verifiedEntry,
} from './host.js'
import {
  Errno,
  LOCK_SUCCESS,
  LOCK_TYPE_UNLCK,
  Msg,
  P9Error,
  RREAD_HEADER,
  SetattrValid,
  STATS_BASIC,
} from './protocol.js'
import { type DirEntry, dirFid, type Fid, type Op, type OpenFile, type Session, writable } from './session.js'

const readvAsync = (fd: number, b: Uint8Array[], pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.readv(fd, b, pos, (e, n) => (e ? reject(e) : resolve(n))))
const writevAsync = (fd: number, b: Uint8Array[], pos: number): Promise<number> =>
  new Promise((resolve, reject) => fs.writev(fd, b, pos, (e, n) => (e ? reject(e) : resolve(n))))
const fsyncAsync = promisify(fs.fsync)
const fdatasyncAsync = promisify(fs.fdatasync)
const fchownAsync = promisify(fs.fchown)
const fchmodAsync = promisify(fs.fchmod)
const { O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = fs.constants

/**
 * Tlopen/Tlcreate flags (P9_DOTL_*, the Linux values on x86) the server passes on: the access
 * mode, O_TRUNC, O_APPEND, O_DSYNC and O_SYNC. The others are the guest kernel's business
 * (O_NONBLOCK, O_NOCTTY, O_CLOEXEC, O_ASYNC) or unsafe to pass (O_DIRECT's alignment is the
 * guest's buffers', O_NOATIME); O_CREAT/O_EXCL come only through Tlcreate.
 */
const PASSED_FLAGS = 0o3 | 0o1000 | 0o2000 | 0o10000 | 0o4000000
const TRUNC = 0o1000

/** Opens a fid for I/O; refuses when it is open already or went away while the open ran. */
function attach(f: Fid, fd: number, dir: boolean, flags: number): OpenFile {
  if (f.open || f.clunked) {
    fs.close(fd, () => {})
    throw new P9Error(Errno.EBADF, 'fid already open')
  }
  f.open = { fd, dir, flags, users: 0, closed: false }
  return f.open
}

/** The open descriptor of a fid, or EBADF. */
function openOf(f: Fid): OpenFile {
  if (!f.open || f.open.closed) throw new P9Error(Errno.EBADF, 'fid not open')
  return f.open
}

/** Tlopen fid[4] flags[4] -> qid iounit[4]. Only regular files and directories open. */
const lopen: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  const flags = r.u32()
  if (f.open || f.xattr) throw new P9Error(Errno.EBADF, 'fid already open')
  const node = f.node
  // Symlinks are resolved by the guest; device nodes, FIFOs and sockets are opened by the guest
  // kernel itself (init_special_inode), never through the server: none is opened on the host.
  if (node.kind === 'symlink') throw new P9Error(Errno.ELOOP, 'a symlink')
  if (node.kind === 'other') throw new P9Error(Errno.EPERM, 'special files are not opened on the host')
  const access = flags & 3
  if (node.kind === 'dir' && access !== 0) throw new P9Error(Errno.EISDIR, 'directory opened for writing')
  if (access !== 0 || flags & TRUNC) writable(s)
  // Reopened through the magic link of the pinned inode: it is this very file, whatever its
  // entry names now (no O_NOFOLLOW: the magic link is the last component and must be followed).
  const hostFlags = (flags & PASSED_FLAGS) | (node.kind === 'dir' ? O_DIRECTORY : 0)
  const fd = await openAsync(node.path, hostFlags)
  attach(f, fd, node.kind === 'dir', hostFlags)
  return w.qid(s.qid(node)).u32(0)
}

/**
 * Tlcreate fid[4] name[s] flags[4] mode[4] gid[4] -> qid iounit[4]: creates and opens `name` in
 * the directory fid, which then names the new file. O_EXCL always: an entry that appeared meanwhile
 * is never opened and re-owned. Owner the fid's user, group the request's (passthrough).
 */
const lcreate: Op = async (s, r, w, _q, hold) => {
  const f = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  const flags = r.u32()
  const mode = r.u32()
  const gid = r.u32()
  writable(s)
  if (f.open) throw new P9Error(Errno.EBADF, 'fid already open')
  const dir = f.node
  const fd = await openAsync(dir.child(name), (flags & PASSED_FLAGS) | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
  let node: HostNode
  try {
    await fchownAsync(fd, f.uid, gid)
    await fchmodAsync(fd, mode & 0o7777)
    node = await nodeFromFd(fd, dir, name, s.live)
  } catch (e) {
    fs.close(fd, () => {})
    throw e
  }
  try {
    attach(f, fd, false, flags & PASSED_FLAGS)
  } catch (e) {
    node.release(s.live)
    throw e
  }
  f.node = node
  dir.release(s.live) // the fid's reference moves to the new node (the request's hold keeps dir)
  return w.qid(s.qid(node)).u32(0)
}

/** Tread fid[4] offset[8] count[4] -> count[4] data: readv straight into the guest's buffers. */
const read: Op = async (s, r, w, q, hold) => {
  const f = s.fid(r.u32(), hold)
  const offset = r.offset()
  const count = Math.min(r.u32(), s.msize - RREAD_HEADER)
  if (f.xattr) return w.u32(0) // the attribute list is empty
  const o = openOf(f)
  if (o.dir) throw new P9Error(Errno.EISDIR, 'read of a directory')
  const target = count > 0 ? q.readTarget(count) : []
  const n = target.length > 0 ? await readvAsync(o.fd, target, offset) : 0
  return { writer: w.u32(n), data: n }
}

/** Twrite fid[4] offset[8] count[4] data -> count[4]: writev straight from the guest's buffers. */
const write: Op = async (s, r, w, q, hold) => {
  const f = s.fid(r.u32(), hold)
  const offset = r.offset()
  const count = r.u32()
  writable(s)
  const data = q.data ?? []
  if (data.reduce((n, b) => n + b.length, 0) !== count) throw new P9Error(Errno.EPROTO, 'Twrite count')
  const o = openOf(f)
  if (o.dir) throw new P9Error(Errno.EISDIR, 'write to a directory')
  const n = count > 0 ? await writevAsync(o.fd, data as Uint8Array[], offset) : 0
  return w.u32(n)
}

const NS = 1_000_000_000n

/**
 * Tgetattr fid[4] request_mask[8] -> valid[8] qid mode uid gid nlink rdev size blksize blocks
 * atime mtime ctime btime (sec[8] nsec[8] each) gen[8] data_version[8]: the basic fields
 * (P9_STATS_BASIC) from fstat of the pinned inode; btime, gen and data_version are 0.
 */
const getattr: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  r.u64()
  const st = await fstatAsync(f.open && !f.open.closed ? f.open.fd : f.node.fd)
  w.u64(STATS_BASIC).qid(s.qidOfStat(st)).u32(Number(st.mode)).u32(Number(st.uid)).u32(Number(st.gid))
  w.u64(st.nlink).u64(st.rdev).u64(st.size).u64(st.blksize).u64(st.blocks)
  for (const t of [st.atimeNs, st.mtimeNs, st.ctimeNs]) w.u64(t / NS).u64(t % NS)
  return w.u64(0).u64(0).u64(0).u64(0)
}

/**
 * Tsetattr fid[4] valid[4] mode[4] uid[4] gid[4] size[8] atime_sec[8] atime_nsec[8] mtime_sec[8]
 * mtime_nsec[8]: owner first (a chown clears set-id bits), then mode, size, times. A regular file
 * or directory is changed through its magic link (the pinned inode); a symlink through its entry
 * with the l* calls, which never follow it. Without *_SET a time becomes now (P9_ATTR_ATIME);
 * CTIME needs nothing (any change sets it).
 */
const setattr: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  const valid = r.u32()
  const mode = r.u32()
  const uid = r.u32()
  const gid = r.u32()
  const size = r.offset()
  const times = [r.offset(), r.u64(), r.offset(), r.u64()] as const
  writable(s)
  const node = f.node
  const link = node.kind === 'symlink'
  const p = link ? await verifiedEntry(node) : node.path
  const V = SetattrValid
  if (valid & (V.UID | V.GID)) {
    const u = valid & V.UID && uid !== 0xffff_ffff ? uid : -1
    const g = valid & V.GID && gid !== 0xffff_ffff ? gid : -1
    await (link ? fs.promises.lchown(p, u, g) : fs.promises.chown(p, u, g))
  }
  if (valid & V.MODE && !link) await fs.promises.chmod(p, mode & 0o7777)
  if (valid & V.SIZE) {
    if (node.kind !== 'file') throw new P9Error(node.kind === 'dir' ? Errno.EISDIR : Errno.EINVAL, 'size')
    if (f.open && !f.open.closed && !f.open.dir)
      await fs.promises.truncate(`/proc/self/fd/${f.open.fd}`, size)
    else await fs.promises.truncate(p, size)
  }
  if (valid & (V.ATIME | V.MTIME)) {
    const now = Date.now() / 1000
    // lstat of a magic link would stat the link in /proc: the pinned inode is fstat-ed.
    const both = valid & V.ATIME && valid & V.MTIME
    const cur = both ? undefined : link ? await lstatAsync(p) : await fstatAsync(node.fd)
    const pick = (bit: number, setBit: number, sec: number, nsec: bigint, current: bigint | undefined) =>
      valid & bit ? (valid & setBit ? sec + Number(nsec % NS) / 1e9 : now) : Number(current ?? 0n) / 1e9
    const atime = pick(V.ATIME, V.ATIME_SET, times[0], times[1], cur?.atimeNs)
    const mtime = pick(V.MTIME, V.MTIME_SET, times[2], times[3], cur?.mtimeNs)
    await (link ? fs.promises.lutimes(p, atime, mtime) : fs.promises.utimes(p, atime, mtime))
  }
  return w
}

/** DT_* of a directory entry (dirent.h), from Node's Dirent. */
function direntType(d: fs.Dirent): number {
  if (d.isDirectory()) return 4
  if (d.isFile()) return 8
  if (d.isSymbolicLink()) return 10
  if (d.isFIFO()) return 1
  if (d.isCharacterDevice()) return 2
  if (d.isBlockDevice()) return 6
  if (d.isSocket()) return 12
  return 0
}

/** The entries of an open directory, '.' and '..' first, each with its qid (lstat, 32 at a time). */
async function listDirectory(s: Session, node: HostNode): Promise<DirEntry[]> {
  const dirents = (await fs.promises.readdir(node.path, {
    withFileTypes: true,
    encoding: 'buffer',
  })) as unknown as (fs.Dirent & { name: Buffer })[]
  const out: DirEntry[] = [
    { qid: s.qid(node), type: 4, name: Buffer.from('.') },
    { qid: s.qid(node.parent ?? node), type: 4, name: Buffer.from('..') },
  ]
  const prefix = Buffer.from(`${node.path}/`)
  for (let i = 0; i < dirents.length; i += 32) {
    const batch = dirents.slice(i, i + 32)
    const stats = await Promise.all(
      batch.map((d) =>
        fs.promises.lstat(Buffer.concat([prefix, d.name]), { bigint: true }).catch(() => undefined),
      ),
    )
    batch.forEach((d, j) => {
      const st = stats[j]
      if (st) out.push({ qid: s.qidOfStat(st), type: direntType(d), name: d.name })
    })
  }
  return out
}

/**
 * Treaddir fid[4] offset[8] count[4] -> count[4] data: entries qid[13] offset[8] type[1] name[s],
 * as many whole ones as fit in count; an entry's offset is the cookie of the next one. The listing
 * is read at offset 0 (opendir/rewinddir) and served from memory after.
 */
const readdir: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  const offset = r.offset()
  const count = Math.min(r.u32(), s.msize - RREAD_HEADER)
  const o = openOf(f)
  if (!o.dir) throw new P9Error(Errno.ENOTDIR, 'readdir of a file')
  if (offset === 0 || !o.entries) o.entries = await listDirectory(s, f.node)
  const at = w.length
  w.u32(0)
  let used = 0
  for (let i = offset; i < o.entries.length; i++) {
    const e = o.entries[i] as DirEntry
    const size = 13 + 8 + 1 + 2 + e.name.length
    if (used + size > count) break
    w.qid(e.qid)
      .u64(i + 1)
      .u8(e.type)
      .string(e.name)
    used += size
  }
  w.setU32(at, used)
  return w
}

/** Tfsync fid[4] datasync[4]. */
const fsync: Op = async (s, r, w, _q, hold) => {
  const o = openOf(s.fid(r.u32(), hold))
  await (r.u32() ? fdatasyncAsync(o.fd) : fsyncAsync(o.fd))
  return w
}

/** Tstatfs fid[4] -> type[4] bsize[4] blocks[8] bfree[8] bavail[8] files[8] ffree[8] fsid[8] namelen[4]. */
const statfs: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  // statfs(2) follows symlinks: a symlink's file system is its directory's.
  const node = f.node.kind === 'symlink' ? (f.node.parent ?? s.root) : f.node
  const st = await fs.promises.statfs(node.path, { bigint: true })
  w.u32(Number(st.type & 0xffff_ffffn)).u32(Number(st.bsize))
  return w.u64(st.blocks).u64(st.bfree).u64(st.bavail).u64(st.files).u64(st.ffree).u64(f.node.dev).u32(255)
}

/**
 * Tlock fid[4] type[1] flags[4] start[8] length[8] proc_id[4] client_id[s] -> status[1]. Locks are
 * granted without being taken on the host (as QEMU's 9p does): one guest kernel is the only
 * client of the share, and it arbitrates its own processes' POSIX locks.
 */
const lock: Op = async (s, r, w, _q, hold) => {
  s.fid(r.u32(), hold)
  r.u8()
  r.u32()
  r.u64()
  r.u64()
  r.u32()
  r.string()
  return w.u8(LOCK_SUCCESS)
}

/** Tgetlock fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]: nothing conflicts (F_UNLCK). */
const getlock: Op = async (s, r, w, _q, hold) => {
  s.fid(r.u32(), hold)
  r.u8()
  const start = r.u64()
  const length = r.u64()
  const proc = r.u32()
  const client = r.stringBytes()
  return w.u8(LOCK_TYPE_UNLCK).u64(start).u64(length).u32(proc).string(client)
}

/**
 * Txattrwalk fid[4] newfid[4] name[s] -> size[8]. Extended attributes are not served (Node has no
 * xattr calls): the list is empty (a fid that reads nothing) and any named attribute is ENODATA.
 */
const xattrwalk: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  const newN = r.u32()
  const name = r.stringBytes()
  if (name.length > 0) throw new P9Error(Errno.ENODATA, 'no extended attributes')
  s.setFid(newN, { node: f.node.ref(), uid: f.uid, xattr: true })
  return w.u64(0)
}

/** Txattrcreate fid[4] name[s] attr_size[8] flags[4]: setting attributes is not supported. */
const xattrcreate: Op = async (s, r, _w, _q, hold) => {
  s.fid(r.u32(), hold)
  r.string()
  r.u64()
  r.u32()
  writable(s)
  throw new P9Error(Errno.EOPNOTSUPP, 'extended attributes are not supported')
}

export const fileOps: Record<number, Op> = {
  [Msg.TLOPEN]: lopen,
  [Msg.TLCREATE]: lcreate,
  [Msg.TREAD]: read,
  [Msg.TWRITE]: write,
  [Msg.TGETATTR]: getattr,
  [Msg.TSETATTR]: setattr,
  [Msg.TREADDIR]: readdir,
  [Msg.TFSYNC]: fsync,
  [Msg.TSTATFS]: statfs,
  [Msg.TLOCK]: lock,
  [Msg.TGETLOCK]: getlock,
  [Msg.TXATTRWALK]: xattrwalk,
  [Msg.TXATTRCREATE]: xattrcreate,
}
