// guest/init and the initramfs around it. The guest cannot boot to /init on our host yet
// (../../../shared/docs/host-kvm.md), so the script is checked for content and, with Debian's
// busybox, for syntax and for applets that exist; never run: it writes to physical memory.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { INIT_PATH } from '../src/guest.js'
import { buildInitramfs, busyboxApplets, DEVICE_NODES, initramfsEntries } from '../src/initramfs.js'

const init = readFileSync(INIT_PATH, 'utf8')
// Debian's busybox-static installs /bin/busybox; busybox (dynamic) too: either has the applets.
const busybox = existsSync('/bin/busybox') ? '/bin/busybox' : undefined
if (!busybox)
  console.warn('busybox checks of guest/init skipped: no /bin/busybox (apt-get install -y busybox-static)')
const hasCpio = spawnSync('cpio', ['--version']).status === 0

/** The script's lines without comments and blank lines. */
const code = init
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'))

describe('guest/init', () => {
  it('is a shell script', () => {
    expect(init.startsWith('#!/bin/sh\n')).toBe(true)
  })

  it('mounts proc, sysfs and devtmpfs before anything uses them', () => {
    const at = (s: string) => code.findIndex((l) => l.startsWith(s))
    expect(at('mount -t proc proc /proc')).toBeGreaterThanOrEqual(0)
    expect(at('mount -t sysfs sysfs /sys')).toBeGreaterThanOrEqual(0)
    expect(at('mount -t devtmpfs devtmpfs /dev')).toBeGreaterThanOrEqual(0)
    // cttyhack finds the console through /sys/class/tty/console/active.
    expect(at('mount -t sysfs')).toBeLessThan(at('setsid cttyhack sh'))
  })

  it('writes the boot-timer byte 123 at 0xC0000000, then prints the marker line', () => {
    const timer = code.findIndex((l) => /^devmem 0xc0000000 8 123\b/.test(l))
    const marker = code.indexOf('echo "vmm-guest: init reached"')
    expect(timer).toBeGreaterThanOrEqual(0)
    expect(marker).toBeGreaterThan(timer)
  })

  it('gives a shell on the console and powers off after it, and on poweroff/reboot/halt', () => {
    expect(code).toContain('setsid cttyhack sh -l &')
    expect(code).toContain('wait $!')
    expect(code.at(-1)).toBe('poweroff -f')
    // busybox's halt.c: halt -> SIGUSR1, poweroff -> SIGUSR2, reboot -> SIGTERM to PID 1.
    expect(code).toEqual(
      expect.arrayContaining(["trap 'poweroff -f' USR2", "trap 'reboot -f' TERM", "trap 'halt -f' USR1"]),
    )
  })

  it.skipIf(!busybox)('parses with busybox sh, and every command it runs is a busybox applet', () => {
    expect(spawnSync(busybox!, ['sh', '-n', INIT_PATH]).status).toBe(0)
    const applets = new Set(busyboxApplets(busybox!).map((a) => a.split('/').at(-1)))
    const builtins = new Set(['export', 'echo', 'trap', 'wait'])
    // A command's first word, and the command that setsid or cttyhack runs in turn.
    const wrappers = new Set(['setsid', 'cttyhack'])
    const commands = code.flatMap((l) =>
      l.split(/\|\||&&|[;&]/).flatMap((part) => {
        const words = part.trim().split(/\s+/)
        let n = 1
        while (n < words.length && wrappers.has(words[n - 1]!)) n++
        return words.slice(0, n).filter((w) => w !== '')
      }),
    )
    const missing = commands.filter((c) => !builtins.has(c) && !applets.has(c))
    expect(missing).toEqual([])
    expect(commands).toEqual(
      expect.arrayContaining(['mount', 'devmem', 'setsid', 'cttyhack', 'sh', 'poweroff']),
    )
  })
})

describe('initramfs', () => {
  it('has /dev/console and the other nodes, busybox, links to it and an executable /init', () => {
    const entries = initramfsEntries(
      new Uint8Array([1, 2]),
      ['bin/sh', 'sbin/poweroff', 'bin/busybox'],
      '#!/bin/sh\n',
    )
    expect(entries).toEqual(expect.arrayContaining([...DEVICE_NODES]))
    expect(entries).toContainEqual({ type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 })
    expect(entries).toContainEqual({ type: 'symlink', path: 'bin/sh', target: '/bin/busybox' })
    expect(entries).toContainEqual({ type: 'symlink', path: 'sbin/poweroff', target: '/bin/busybox' })
    expect(entries.filter((e) => e.path === 'bin/busybox')).toEqual([
      { type: 'file', path: 'bin/busybox', data: new Uint8Array([1, 2]), mode: 0o755 },
    ])
    expect(entries.at(-1)).toEqual({ type: 'file', path: 'init', data: '#!/bin/sh\n', mode: 0o755 })
  })

  it.skipIf(!busybox || !hasCpio)(
    'built from the host busybox, it lists in cpio as the kernel will unpack it',
    () => {
      // buildInitramfs takes an unpacked package root; / is one for an installed busybox.
      const listing = execFileSync('sh', ['-c', 'gzip -dc | cpio -tv --quiet'], {
        input: buildInitramfs('/', init),
        encoding: 'utf8',
      })
      expect(listing).toMatch(/^-rwxr-xr-x .* init$/m)
      expect(listing).toMatch(/^-rwxr-xr-x .* bin\/busybox$/m)
      expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m)
      expect(listing).toMatch(/^lrwxrwxrwx .* sbin\/devmem -> \/bin\/busybox$/m)
      expect(listing).toMatch(/^crw------- .* 5,\s+1 .* dev\/console$/m)
    },
  )
})
