// 9P2000.L operations on directory entries: Tmkdir, Tsymlink, Tmknod, Trename, Trenameat,
// Tunlinkat, Tremove, Tlink, Treadlink (Documentation/filesystems/9p.rst, net/9p/client.c).
// Every name is one checked component looked up in a pinned directory (host.ts); new entries get
// the fid's user and the request's group, then the exact mode (the VMM's umask must not apply).
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import { checkName, type HostNode, lstatAsync, openAsync, openNode, verifiedEntry } from './host.js'
import { AT_REMOVEDIR, Errno, Msg, P9Error } from './protocol.js'
import { dirFid, type Op, type Session, writable } from './session.js'

const fchownAsync = promisify(fs.fchown)
const fchmodAsync = promisify(fs.fchmod)
const closeAsync = promisify(fs.close)
const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = fs.constants

/** PATH_MAX: the longest symlink target Linux accepts. */
const PATH_MAX = 4096
const S_IFMT = 0o170000
const S_IFREG = 0o100000

/** Owner, then mode, of a new directory: through the node just opened on it, never its entry. */
async function own(node: HostNode, uid: number, gid: number, mode: number): Promise<void> {
  if (node.kind !== 'dir' && node.kind !== 'file') throw new P9Error(Errno.ESTALE, 'replaced while created')
  await fs.promises.chown(node.path, uid, gid)
  await fs.promises.chmod(node.path, mode & 0o7777)
}

/** Tmkdir dfid[4] name[s] mode[4] gid[4] -> qid. */
const mkdir: Op = async (s, r, w, _q, hold) => {
  const d = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  const mode = r.u32()
  const gid = r.u32()
  writable(s)
  await fs.promises.mkdir(d.node.child(name), 0o700)
  const node = await openNode(d.node, name, s.live)
  try {
    await own(node, d.uid, gid, mode)
    return w.qid(s.qid(node))
  } finally {
    node.release(s.live)
  }
}

/** Tsymlink fid[4] name[s] symtgt[s] gid[4] -> qid. The target is stored, never followed here. */
const symlink: Op = async (s, r, w, _q, hold) => {
  const d = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  const target = r.stringBytes()
  const gid = r.u32()
  writable(s)
  if (target.length === 0 || target.includes(0)) throw new P9Error(Errno.EINVAL, 'symlink target')
  if (target.length >= PATH_MAX) throw new P9Error(Errno.ENAMETOOLONG, 'symlink target')
  const entry = d.node.child(name)
  await fs.promises.symlink(Buffer.from(target), entry)
  await fs.promises.lchown(entry, d.uid, gid)
  return w.qid(s.qidOfStat(await lstatAsync(entry)))
}

/**
 * Tmknod dfid[4] name[s] mode[4] major[4] minor[4] gid[4] -> qid. Regular files only: a device
 * node made on the host would name a *host* device (major:minor mean the host's devices there),
 * which a host process could then be tricked into opening, so it is refused (EPERM, as for a
 * container without CAP_MKNOD); FIFOs and sockets need mknod(2), which Node does not have
 * (EOPNOTSUPP). The guest's /dev is its own devtmpfs, so containers rarely need either.
 */
const mknod: Op = async (s, r, w, _q, hold) => {
  const d = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  const mode = r.u32()
  r.u32()
  r.u32() // major, minor
  const gid = r.u32()
  writable(s)
  const fmt = mode & S_IFMT
  if (fmt === 0o020000 || fmt === 0o060000)
    throw new P9Error(Errno.EPERM, 'device nodes are not created on the host')
  if (fmt !== S_IFREG && fmt !== 0) throw new P9Error(Errno.EOPNOTSUPP, 'FIFOs and sockets are not supported')
  const fd = await openAsync(d.node.child(name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
  try {
    await fchownAsync(fd, d.uid, gid)
    await fchmodAsync(fd, mode & 0o7777)
  } finally {
    await closeAsync(fd)
  }
  return w.qid(s.qidOfStat(await lstatAsync(d.node.child(name))))
}

/** Nodes that named oldDir/oldName now name newDir/newName (the guest's own rename moved them). */
function moved(s: Session, oldDir: HostNode, oldName: string, newDir: HostNode, newName: string): void {
  for (const n of s.nodes()) {
    const p = n.parent
    if (!p || n.name !== oldName || p.ino !== oldDir.ino || p.dev !== oldDir.dev) continue
    n.parent = newDir.ref()
    n.name = newName
    p.release(s.live)
  }
}

/** Trename fid[4] dfid[4] name[s]: the fid's own entry moves (older clients; Linux prefers Trenameat). */
const rename: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  const d = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  writable(s)
  const node = f.node
  const from = node.parent
  if (!from) throw new P9Error(Errno.EBUSY, 'the root cannot be renamed')
  hold.node(from)
  const oldName = node.name
  await fs.promises.rename(await verifiedEntry(node), d.node.child(name))
  moved(s, from, oldName, d.node, name)
  return w
}

/** Trenameat olddirfid[4] oldname[s] newdirfid[4] newname[s]. */
const renameat: Op = async (s, r, w, _q, hold) => {
  const od = dirFid(s, r.u32(), hold)
  const oldName = checkName(r.stringBytes())
  const nd = dirFid(s, r.u32(), hold)
  const newName = checkName(r.stringBytes())
  writable(s)
  await fs.promises.rename(od.node.child(oldName), nd.node.child(newName))
  moved(s, od.node, oldName, nd.node, newName)
  return w
}

/** Tunlinkat dirfd[4] name[s] flags[4]: rmdir with AT_REMOVEDIR, unlink otherwise. */
const unlinkat: Op = async (s, r, w, _q, hold) => {
  const d = dirFid(s, r.u32(), hold)
  const name = checkName(r.stringBytes())
  const flags = r.u32()
  writable(s)
  const entry = d.node.child(name)
  await (flags & AT_REMOVEDIR ? fs.promises.rmdir(entry) : fs.promises.unlink(entry))
  return w
}

/** Tremove fid[4]: removes the fid's entry; the fid is clunked whatever happens (9p.rst). */
const remove: Op = async (s, r, w, _q, hold) => {
  const n = r.u32()
  const f = s.fid(n, hold)
  try {
    writable(s)
    const entry = await verifiedEntry(f.node)
    await (f.node.kind === 'dir' ? fs.promises.rmdir(entry) : fs.promises.unlink(entry))
    return w
  } finally {
    s.clunk(n)
  }
}

/** Tlink dfid[4] fid[4] name[s]: a hard link to the fid's file (link(2) never follows a symlink). */
const link: Op = async (s, r, w, _q, hold) => {
  const d = dirFid(s, r.u32(), hold)
  const f = s.fid(r.u32(), hold)
  const name = checkName(r.stringBytes())
  writable(s)
  if (f.node.kind === 'dir') throw new P9Error(Errno.EPERM, 'hard link to a directory')
  await fs.promises.link(await verifiedEntry(f.node), d.node.child(name))
  return w
}

/** Treadlink fid[4] -> target[s]. */
const readlink: Op = async (s, r, w, _q, hold) => {
  const f = s.fid(r.u32(), hold)
  if (f.node.kind !== 'symlink') throw new P9Error(Errno.EINVAL, 'not a symlink')
  const target = await fs.promises.readlink(await verifiedEntry(f.node), { encoding: 'buffer' })
  return w.string(target)
}

export const dirOps: Record<number, Op> = {
  [Msg.TMKDIR]: mkdir,
  [Msg.TSYMLINK]: symlink,
  [Msg.TMKNOD]: mknod,
  [Msg.TRENAME]: rename,
  [Msg.TRENAMEAT]: renameat,
  [Msg.TUNLINKAT]: unlinkat,
  [Msg.TREMOVE]: remove,
  [Msg.TLINK]: link,
  [Msg.TREADLINK]: readlink,
}
