// The host side of the 9P server: files reached only through pinned directory descriptors.
//
// Why descriptors and not paths: a fid could hold a host path string, but then every operation
// re-resolves the whole path, and a directory on it that was renamed away and replaced by a
// symlink (by the guest itself, with two requests in flight, or by a host process) makes the
// next operation follow that symlink out of the shared directory. Instead each walked node holds
// an O_PATH|O_NOFOLLOW descriptor of its inode (open(2): O_PATH pins the inode without opening
// it for I/O), and every operation names `/proc/self/fd/<dir>/<name>`: the kernel jumps to the
// pinned directory through the magic link (proc(5), /proc/pid/fd) and looks up one component in
// it, as openat(dirfd, name) would; Node's fs has no *at calls. A name is one component (no '/',
// no NUL, not '.' or '..'), and the last component is never followed: O_NOFOLLOW on open, lstat,
// lchown, lutimes, readlink, and mkdir/symlink/rename/unlink/link do not follow by definition.
//
// What this does not close (the TOCTOU limit): operations that must name a node by its entry
// (parent + name: rename, remove, link, readlink, chown of a symlink) look it up again; if a host
// process renames or replaces that entry in between, the operation acts on whatever the entry is
// now, still inside the pinned parent, hence still inside the root. We lstat the entry first and
// answer ESTALE when it is no longer the node's inode, which narrows the window to the syscall
// pair. openat2(RESOLVE_BENEATH) would close it; Node does not expose it.
import * as fs from 'node:fs'
import { promisify } from 'node:util'
import { Errno, P9Error } from './protocol.js'

/** open(2)'s O_PATH on Linux (asm-generic/fcntl.h, 010000000); Node's fs.constants lacks it. */
export const O_PATH = 0o10000000
const { O_NOFOLLOW, O_DIRECTORY } = fs.constants

export const openAsync = promisify(fs.open) as (path: string, flags: number, mode?: number) => Promise<number>
export const closeAsync = promisify(fs.close)
export const fstatAsync = (fd: number): Promise<fs.BigIntStats> =>
  new Promise((resolve, reject) =>
    fs.fstat(fd, { bigint: true }, (e, s) => (e ? reject(e) : resolve(s as unknown as fs.BigIntStats))),
  )
export const lstatAsync = (path: string): Promise<fs.BigIntStats> => fs.promises.lstat(path, { bigint: true })

export type Kind = 'dir' | 'file' | 'symlink' | 'other'

export function kindOf(mode: bigint | number): Kind {
  const fmt = Number(mode) & 0o170000
  return fmt === 0o040000 ? 'dir' : fmt === 0o100000 ? 'file' : fmt === 0o120000 ? 'symlink' : 'other'
}

/**
 * One host inode the guest has walked to, pinned by an O_PATH descriptor. Referenced by fids, by
 * its children (a child keeps its parent for '..' and for entry operations) and by requests in
 * flight: the descriptor is closed only when nothing uses it, so its number is never reused
 * while a path built from it is being resolved.
 */
export class HostNode {
  refs = 1
  constructor(
    readonly fd: number,
    /** Undefined for the root of the share. */
    public parent: HostNode | undefined,
    /** The entry name in `parent` (mutable: a rename by the guest moves it). */
    public name: string,
    readonly ino: bigint,
    readonly dev: bigint,
    readonly kind: Kind,
  ) {}

  /** The node itself, through its magic link (follows to the pinned inode, never a symlink's target). */
  get path(): string {
    return `/proc/self/fd/${this.fd}`
  }

  /** `name` in this directory. */
  child(name: string): string {
    return `${this.path}/${name}`
  }

  /** The node's own entry, parent + name: for operations that act on a link itself. */
  get entry(): string {
    if (!this.parent) throw new P9Error(Errno.EBUSY, 'the root of the share has no entry')
    return this.parent.child(this.name)
  }

  same(stat: fs.BigIntStats): boolean {
    return stat.ino === this.ino && stat.dev === this.dev
  }

  ref(): this {
    this.refs++
    return this
  }

  /** Drops one reference; the last one closes the descriptor and lets the parent go. */
  release(live: Set<HostNode>): void {
    if (--this.refs > 0) return
    live.delete(this)
    fs.close(this.fd, () => {})
    this.parent?.release(live)
  }
}

/** Opens `name` in `dir` (or `dir` itself when name is undefined) as a node, never following a symlink. */
export async function openNode(dir: HostNode, name: string, live: Set<HostNode>): Promise<HostNode> {
  const fd = await openAsync(dir.child(name), O_PATH | O_NOFOLLOW)
  try {
    const s = await fstatAsync(fd)
    const node = new HostNode(fd, dir.ref(), name, s.ino, s.dev, kindOf(s.mode))
    live.add(node)
    return node
  } catch (e) {
    fs.close(fd, () => {})
    throw e
  }
}

/** The root node of a share: `path` must be a directory (it may itself be reached through symlinks). */
export function openRoot(path: string, live: Set<HostNode>): HostNode {
  const fd = fs.openSync(path, O_PATH | O_DIRECTORY)
  const s = fs.fstatSync(fd, { bigint: true })
  const node = new HostNode(fd, undefined, '', s.ino, s.dev, 'dir')
  live.add(node)
  return node
}

/** Checks that the node's entry still names the node (see the TOCTOU note above); returns the entry. */
export async function verifiedEntry(node: HostNode): Promise<string> {
  const entry = node.entry
  const s = await lstatAsync(entry).catch(() => undefined)
  if (!s || !node.same(s)) throw new P9Error(Errno.ESTALE, 'the entry no longer names this file')
  return entry
}

/** The Linux errno of a failure: ours, or Node's (libuv's codes are the negated errno on Linux). */
export function errnoOf(e: unknown): number {
  if (e instanceof P9Error) return e.errno
  const n = (e as { errno?: unknown })?.errno
  if (typeof n === 'number' && n !== 0 && Math.abs(n) < 4096) return Math.abs(n)
  return Errno.EIO
}

/**
 * One path component from the guest (Twalk's wname, Tlcreate's name, ...): non-empty, at most
 * 255 bytes (NAME_MAX), no '/' or NUL, and not '.' or '..' (the caller handles '..' in a walk).
 */
export function checkName(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new P9Error(Errno.EINVAL, 'empty name')
  if (bytes.length > 255) throw new P9Error(Errno.ENAMETOOLONG, 'name longer than 255 bytes')
  for (const b of bytes) if (b === 0 || b === 0x2f) throw new P9Error(Errno.EINVAL, 'name with / or NUL')
  const name = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')
  // A name that is not valid UTF-8 cannot be passed through Node's string paths unchanged.
  if (!Buffer.from(name).equals(bytes)) throw new P9Error(Errno.EINVAL, 'name is not UTF-8')
  if (name === '.' || name === '..') throw new P9Error(Errno.EINVAL, `name ${name}`)
  return name
}

/** A node for a file just created and opened as `fd` (reopened O_PATH through its magic link). */
export async function nodeFromFd(
  fd: number,
  parent: HostNode,
  name: string,
  live: Set<HostNode>,
): Promise<HostNode> {
  const pathFd = await openAsync(`/proc/self/fd/${fd}`, O_PATH)
  try {
    const s = await fstatAsync(pathFd)
    const node = new HostNode(pathFd, parent.ref(), name, s.ino, s.dev, kindOf(s.mode))
    live.add(node)
    return node
  } catch (e) {
    fs.close(pathFd, () => {})
    throw e
  }
}
