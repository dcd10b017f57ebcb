// guest/init, guest/inittab and the initramfs around them. The guest cannot boot to /init on our
// host yet (../../../shared/docs/host-kvm.md), so /init is checked for content and, with Debian's
// busybox, for syntax and applets; it is never run here: it writes to physical memory. busybox
// init with our inittab is run, as PID 1 of a PID namespace in a chroot of the initramfs.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { INIT_PATH, INITTAB_PATH } from '../src/guest.js'
import { buildInitramfs, busyboxApplets, DEVICE_NODES, initramfsEntries } from '../src/initramfs.js'

const init = readFileSync(INIT_PATH, 'utf8')
const inittab = readFileSync(INITTAB_PATH, 'utf8')
// Debian's busybox-static installs /bin/busybox; busybox (dynamic) too: either has the applets.
const busybox = existsSync('/bin/busybox') ? '/bin/busybox' : undefined
if (!busybox)
  console.warn('busybox checks of guest/ skipped: no /bin/busybox (apt-get install -y busybox-static)')
const hasCpio = spawnSync('cpio', ['--version']).status === 0
// A PID namespace needs CAP_SYS_ADMIN; `unshare` is util-linux.
const canUnshare =
  process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', '--mount', 'true']).status === 0
if (!canUnshare) console.warn('busybox init test skipped: needs root and unshare(1) for a PID namespace')

/** Lines without comments and blank lines. */
const code = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))

describe('guest/init', () => {
  const lines = code(init)

  it('is a shell script', () => {
    expect(init.startsWith('#!/bin/sh\n')).toBe(true)
  })

  it('mounts proc, sysfs and devtmpfs', () => {
    expect(lines).toEqual(
      expect.arrayContaining([
        'mount -t proc proc /proc',
        'mount -t sysfs sysfs /sys',
        'mount -t devtmpfs devtmpfs /dev',
      ]),
    )
  })

  it('writes the boot-timer byte 123 at 0xC0000000, prints the marker line, then becomes busybox init', () => {
    const timer = lines.findIndex((l) => /^devmem 0xc0000000 8 123\b/.test(l))
    const marker = lines.indexOf('echo "vmm-guest: init reached"')
    expect(timer).toBeGreaterThan(lines.indexOf('mount -t devtmpfs devtmpfs /dev'))
    expect(marker).toBeGreaterThan(timer)
    expect(lines.at(-1)).toBe('exec /sbin/init')
  })

  it.skipIf(!busybox)(
    'writes the power-button action busybox acpid runs: an executable script that powers off',
    () => {
      const action = '/etc/acpi/PWRF/00000080'
      const steps = lines.filter((l) => l.includes('/etc/acpi'))
      expect(steps.length).toBeGreaterThanOrEqual(2)
      const dir = mkdtempSync(join(tmpdir(), 'vmm-init-acpi-'))
      try {
        const script = steps.map((l) => l.replaceAll('/etc/acpi', `${dir}/etc/acpi`)).join('\n')
        expect(spawnSync(busybox!, ['sh', '-e', '-c', script]).status).toBe(0)
        const written = `${dir}${action}`
        expect(statSync(written).mode & 0o777).toBe(0o755)
        const text = readFileSync(written, 'utf8')
        expect(text.startsWith('#!/bin/sh\n')).toBe(true)
        expect(code(text)).toEqual(['exec poweroff'])
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
  )

  it.skipIf(!busybox)('parses with busybox sh, and every command it runs is a busybox applet', () => {
    expect(spawnSync(busybox!, ['sh', '-n', INIT_PATH]).status).toBe(0)
    const applets = new Set(busyboxApplets(busybox!).map((a) => a.split('/').at(-1)))
    const builtins = new Set(['export', 'echo', 'exec'])
    const commands = lines.flatMap((l) => l.split(/\|\||&&|;/).map((part) => part.trim().split(/\s+/)))
    const missing = commands.flatMap((words) =>
      words[0] === 'exec' ? [words[1]!.split('/').at(-1)!] : builtins.has(words[0]!) ? [] : [words[0]!],
    )
    expect(missing.filter((c) => !applets.has(c))).toEqual([])
    expect(missing).toEqual(expect.arrayContaining(['mount', 'devmem', 'init']))
  })
})

describe('guest/inittab', () => {
  it('starts acpid for the power button, respawns a shell on the console through cttyhack, and reboots on Ctrl-Alt-Del', () => {
    expect(code(inittab)).toEqual([
      '::sysinit:/sbin/acpid -l /dev/null',
      '::respawn:/bin/cttyhack /bin/sh -l',
      '::ctrlaltdel:/sbin/reboot',
    ])
  })

  it.skipIf(!busybox)('names busybox applets at the paths the initramfs links them', () => {
    const applets = new Set(busyboxApplets(busybox!))
    for (const l of code(inittab)) {
      const command = l.split(':').at(-1)!.split(' ')[0]!
      expect(applets.has(command.slice(1)), command).toBe(true)
    }
  })
})

describe('initramfs', () => {
  it('has /dev/console and the other nodes, busybox, links to it, /etc/inittab and an executable /init', () => {
    const entries = initramfsEntries(
      new Uint8Array([1, 2]),
      ['bin/sh', 'sbin/poweroff', 'bin/busybox'],
      'I',
      'T',
    )
    expect(entries).toEqual(expect.arrayContaining([...DEVICE_NODES]))
    expect(entries).toContainEqual({ type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 })
    expect(entries).toContainEqual({ type: 'symlink', path: 'bin/sh', target: '/bin/busybox' })
    expect(entries).toContainEqual({ type: 'symlink', path: 'sbin/poweroff', target: '/bin/busybox' })
    expect(entries.filter((e) => e.path === 'bin/busybox')).toEqual([
      { type: 'file', path: 'bin/busybox', data: new Uint8Array([1, 2]), mode: 0o755 },
    ])
    expect(entries).toContainEqual({ type: 'file', path: 'etc/inittab', data: 'T', mode: 0o644 })
    expect(entries.at(-1)).toEqual({ type: 'file', path: 'init', data: 'I', mode: 0o755 })
  })

  it.skipIf(!busybox || !hasCpio)(
    'built from the host busybox, it lists in cpio as the kernel will unpack it',
    () => {
      // buildInitramfs takes an unpacked package root; / is one for an installed busybox.
      const listing = execFileSync('sh', ['-c', 'gzip -dc | cpio -tv --quiet'], {
        input: buildInitramfs('/', init, inittab),
        encoding: 'utf8',
      })
      expect(listing).toMatch(/^-rwxr-xr-x .* init$/m)
      expect(listing).toMatch(/^-rw-r--r-- .* etc\/inittab$/m)
      expect(listing).toMatch(/^-rwxr-xr-x .* bin\/busybox$/m)
      expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> \/bin\/busybox$/m)
      expect(listing).toMatch(/^lrwxrwxrwx .* sbin\/devmem -> \/bin\/busybox$/m)
      expect(listing).toMatch(/^crw------- .* 5,\s+1 .* dev\/console$/m)
    },
  )

  it.skipIf(!busybox || !hasCpio || !canUnshare)(
    'busybox init with our inittab: a shell that respawns, and poweroff ends PID 1',
    async () => {
      // The archive unpacked without dev/ (its nodes would be the host's console and memory);
      // /init is not run (devmem). In a PID namespace, poweroff makes the kernel kill the
      // namespace's init with SIGINT (reboot(2)), which unshare passes on.
      const root = mkdtempSync(join(tmpdir(), 'vmm-initramfs-'))
      try {
        execFileSync('sh', ['-c', `gzip -dc | cpio -id --quiet --nonmatching 'dev/*'`], {
          cwd: root,
          input: buildInitramfs('/', init, inittab),
        })
        const child = spawn('unshare', ['--pid', '--fork', '--mount', 'chroot', root, '/sbin/init'], {
          env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
          stdio: ['pipe', 'pipe', 'pipe'],
        })
        let out = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (out += d))
        const ended = new Promise<NodeJS.Signals | number | null>((resolve) =>
          child.on('exit', (code, signal) => resolve(signal ?? code)),
        )
        const waitFor = async (text: string) => {
          for (let i = 0; i < 200 && !out.includes(text); i++) await new Promise((r) => setTimeout(r, 50))
          expect(out).toContain(text)
        }
        // The shell reads commands from the pipe; `exit` ends it and init starts another.
        child.stdin.write('echo first-$((6*7))\nexit\n')
        await waitFor('first-42')
        child.stdin.write('echo second-$((6*7))\npoweroff\n')
        await waitFor('second-42')
        expect(await ended).toBe('SIGINT')
        expect(out).toContain('Requesting system poweroff')
      } finally {
        rmSync(root, { recursive: true, force: true })
      }
    },
    20_000,
  )
})
