// The bundle's root and mounts (config.md "Root", "Mounts") as the guest agent mounts them. Host
// directories reach the guest over virtio-9p: one device for root.path, and one per distinct
// directory a bind mount comes from (a bind of a file shares the file's directory, so Docker's
// /etc/hosts, /etc/hostname and /etc/resolv.conf, siblings on the host, cost one device). The
// options become mount(2) flags and data the way mount(8) splits them.
import { statSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Mount, Spec } from './config.js'
import { OciError } from './errors.js'

// <sys/mount.h>
const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  REC: 16384,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
}

/** mount(8)'s flag options: [set, clear]. Propagation options are for the host's mount tree: dropped. */
const FLAGS: Record<string, [number, number]> = {
  ro: [MS.RDONLY, 0],
  rw: [0, MS.RDONLY],
  nosuid: [MS.NOSUID, 0],
  suid: [0, MS.NOSUID],
  nodev: [MS.NODEV, 0],
  dev: [0, MS.NODEV],
  noexec: [MS.NOEXEC, 0],
  exec: [0, MS.NOEXEC],
  sync: [MS.SYNCHRONOUS, 0],
  async: [0, MS.SYNCHRONOUS],
  dirsync: [MS.DIRSYNC, 0],
  mand: [MS.MANDLOCK, 0],
  nomand: [0, MS.MANDLOCK],
  noatime: [MS.NOATIME, 0],
  atime: [0, MS.NOATIME],
  nodiratime: [MS.NODIRATIME, 0],
  diratime: [0, MS.NODIRATIME],
  relatime: [MS.RELATIME, 0],
  norelatime: [0, MS.RELATIME],
  strictatime: [MS.STRICTATIME, 0],
  bind: [MS.BIND, 0],
  rbind: [MS.BIND | MS.REC, 0],
}
const PROPAGATION = new Set([
  'private',
  'rprivate',
  'shared',
  'rshared',
  'slave',
  'rslave',
  'unbindable',
  'runbindable',
])

export function parseOptions(options: readonly string[] = []): { flags: number; data: string } {
  let flags = 0
  const data: string[] = []
  for (const o of options) {
    const f = FLAGS[o]
    if (f) flags = (flags | f[0]) & ~f[1]
    else if (!PROPAGATION.has(o)) data.push(o)
  }
  return { flags, data: data.join(',') }
}

export interface Share {
  /** The 9p mount tag (at most 31 bytes: virtio-9p's config has a u16 length, Linux reads 31). */
  tag: string
  hostPath: string
  readonly: boolean
}

export interface GuestMounts {
  shares: Share[]
  /** 'M' records for the agent: kind, source, target, fstype, flags, data (NUL-separated). */
  records: string[]
}

const record = (...f: (string | number)[]) => f.join('\0')
export const SHARE_DIR = '/run/shares'

export function guestMounts(spec: Spec, have9p: boolean): GuestMounts {
  const shares: Share[] = [{ tag: 'rootfs', hostPath: spec.root.path, readonly: spec.root.readonly === true }]
  const root = have9p
    ? record('root', 'rootfs', '/', '9p', spec.root.readonly ? MS.RDONLY : 0, '')
    : record('root', '/rootfs', '/', 'initramfs', 0, '')
  const shareOf = new Map<string, Share>()
  const mounts = (spec.mounts ?? []).map((m) => mountRecord(m, have9p, shares, shareOf))
  // The root first, then each share where the binds find it, then the mounts in their order.
  return { shares: have9p ? shares : [], records: [root, ...shareRecords(shares), ...mounts] }
}

function mountRecord(m: Mount, have9p: boolean, shares: Share[], shareOf: Map<string, Share>): string {
  const { flags, data } = parseOptions(m.options)
  const type = m.type ?? ''
  const isBind = type === 'bind' || (flags & MS.BIND) !== 0
  // /dev is the guest's own devtmpfs (the devices of this kernel, not the host's), /dev/shm its
  // own tmpfs (Docker binds a host tmpfs there, memory the guest has no use for sharing).
  if (m.destination === '/dev') return record('fs', 'devtmpfs', '/dev', 'devtmpfs', flags & ~MS.NOEXEC, '')
  if (m.destination === '/dev/shm')
    return record('fs', 'shm', '/dev/shm', 'tmpfs', flags & ~MS.BIND & ~MS.REC, 'mode=1777')
  if (!isBind) return record('fs', m.source ?? type, m.destination, type, flags, data)
  if (!have9p)
    throw new OciError(`mounts: the bind mount of ${m.source} on ${m.destination} needs the virtio-9p device`)
  const source = m.source ?? ''
  let st: ReturnType<typeof statSync>
  try {
    st = statSync(source)
  } catch {
    throw new OciError(`mounts: bind source ${JSON.stringify(source)} of ${m.destination} does not exist`)
  }
  const dir = st.isDirectory() ? source : dirname(source)
  const readonly = (flags & MS.RDONLY) !== 0
  const key = `${dir}\0${readonly}`
  let share = shareOf.get(key)
  if (!share) {
    share = { tag: `bind${shares.length}`, hostPath: dir, readonly }
    shares.push(share)
    shareOf.set(key, share)
    // The share itself is mounted once, outside the container's root, then bound into it.
  }
  const inGuest = `${SHARE_DIR}/${share.tag}${st.isDirectory() ? '' : `/${basename(source)}`}`
  return record('bind', inGuest, m.destination, '', flags, '')
}

/** The records that mount each bind share in the guest before the container's mounts use them. */
export function shareRecords(shares: readonly Share[]): string[] {
  return shares
    .filter((s) => s.tag !== 'rootfs')
    .map((s) => record('share', s.tag, `${SHARE_DIR}/${s.tag}`, '9p', s.readonly ? MS.RDONLY : 0, ''))
}
