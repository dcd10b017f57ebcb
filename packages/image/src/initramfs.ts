// The default guest's initramfs: Debian's busybox-static as /bin/busybox with a link per applet,
// our /init and /etc/inittab, and the device nodes the kernel needs before /init mounts devtmpfs.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type CpioEntry, gzipCpio, writeCpio } from './cpio.js'

/**
 * Device nodes (Documentation/admin-guide/devices.txt numbers). /dev/console must exist in the
 * archive itself: the kernel opens it for PID 1's stdin/stdout/stderr before running /init
 * (init/main.c: console_on_rootfs), when devtmpfs is not mounted yet. The others let /init and
 * its first commands work even if mounting devtmpfs fails.
 */
export const DEVICE_NODES: readonly CpioEntry[] = [
  { type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
  { type: 'char', path: 'dev/ttyS0', major: 4, minor: 64, mode: 0o600 },
  { type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
  { type: 'char', path: 'dev/mem', major: 1, minor: 1, mode: 0o640 },
]

/**
 * The applets of a busybox binary as paths relative to the root ("bin/sh", "sbin/poweroff"),
 * from `busybox --list-full`. The binary is x86-64 and static, like the host that builds it.
 */
export function busyboxApplets(busybox: string): string[] {
  return execFileSync(busybox, ['--list-full'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
}

/** The archive's entries, in the order they are written. */
export function initramfsEntries(
  busybox: Uint8Array,
  applets: readonly string[],
  init: string,
  inittab: string,
): CpioEntry[] {
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'root', 'etc'].map(
      (path): CpioEntry => ({ type: 'dir', path }),
    ),
    // Sticky and world-writable, as every /tmp (init mounts a tmpfs over it).
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    ...DEVICE_NODES,
    { type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
  ]
  for (const applet of applets) {
    if (applet === 'bin/busybox') continue
    entries.push({ type: 'symlink', path: applet, target: '/bin/busybox' })
  }
  entries.push({ type: 'file', path: 'etc/inittab', data: inittab, mode: 0o644 })
  entries.push({ type: 'file', path: 'init', data: init, mode: 0o755 })
  return entries
}

/** The gzip-compressed initramfs from an unpacked busybox-static package, /init and /etc/inittab. */
export function buildInitramfs(busyboxPackageRoot: string, init: string, inittab: string): Buffer {
  const busybox = join(busyboxPackageRoot, 'bin', 'busybox')
  return gzipCpio(writeCpio(initramfsEntries(readFileSync(busybox), busyboxApplets(busybox), init, inittab)))
}
