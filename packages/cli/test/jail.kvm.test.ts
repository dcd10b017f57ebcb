// `vmm jail` on the real /dev/kvm, as root (issue 17): tiny raw guests under the jail, with a
// hostile device (fixtures/hostile-plugin.mjs) that does on a guest write what an exploited device
// bug could do with the VMM's rights: read /etc/shadow, list the host's processes, eat memory.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { fixture } from './fixtures.js'
import { descendants, exited, jailUnavailable, readOr, snapshotRunning, tasks } from './jail-fixtures.js'

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const plugin = fileURLToPath(new URL('./fixtures/hostile-plugin.mjs', import.meta.url))
const exampleMachine = fileURLToPath(
  new URL('../../../examples/debug-exit-machine/machine.yaml', import.meta.url),
)
const NOBODY = '65534'

const skip = jailUnavailable('vmm jail needs root (namespaces, mounts, cgroups)')
if (skip) console.warn(`[jail kvm tests skipped] ${skip}`)

/** A fresh chroot base for one test (each test checks it is empty again; removed after it). */
const bases: string[] = []
const base = () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-base-'))
  bases.push(dir)
  return dir
}
afterEach(() => {
  for (const d of bases.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** `mov al, <value>; out 0xf4, al; hlt`: asks the hostile probe for probe <value>. */
const probeGuest = (value: number) => Uint8Array.of(0xb0, value, 0xe6, 0xf4, 0xf4)

function probeMachine(value: number, memory = '1MiB'): string {
  const dir = fixture({
    'g.bin': probeGuest(value),
    'm.yaml':
      `plugins: [${JSON.stringify(plugin)}]\nmachine: { memory: ${memory} }\ncomponents:\n` +
      '  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n' +
      '  probe: { type: hostile-probe, resources: { port: 0xf4 } }\n',
  })
  return join(dir, 'm.yaml')
}

function jail(args: readonly string[]) {
  const r = spawnSync(process.execPath, [main, 'jail', ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const ids = (id: string, chroot: string) => [
  '--id',
  id,
  '--uid',
  NOBODY,
  '--gid',
  NOBODY,
  '--chroot-base',
  chroot,
]

/** The probe's report, from the VMM's "vmm: <reason>" line. */
function report(stderr: string): unknown {
  const m = /^vmm: hostile-probe: (.*)$/m.exec(stderr)
  if (!m) throw new Error(`no probe report in: ${stderr}`)
  return JSON.parse(m[1]!)
}

/** The processes below `pid` (children, theirs, ...). */

/** Waits for the jailed VMM (the descendant running main.js run) to exist past its exec. */
async function jailedVmm(child: ChildProcess, manifest: string, stderr: () => string): Promise<number> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`vmm jail exited (${child.exitCode}) early: ${stderr()}`)
    const vmm = descendants(child.pid!).find((p) => {
      const cmd = readOr(`/proc/${p}/cmdline`).split('\0')
      return (
        (cmd.includes('run') || cmd.includes('restore')) &&
        cmd.includes(manifest) &&
        /Uid:\s+65534/.test(readOr(`/proc/${p}/status`))
      )
    })
    if (vmm !== undefined) return vmm
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('the jailed VMM did not start')
}

/**
 * Waits until the VMM `pid` runs its vCPU thread ("vcpu0"): the machine is built, so its signal
 * handlers are set (SigCgt cannot tell: Node catches SIGTERM from its start, to reset the terminal
 * before dying of it).
 */
async function vcpuRunning(pid: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (tasks(pid).some((t) => readOr(`/proc/${pid}/task/${t}/comm`).trim() === 'vcpu0')) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`the VMM (pid ${pid}) never started its vCPU`)
}

describe.skipIf(skip)('vmm jail on /dev/kvm', { timeout: 180_000 }, () => {
  it('runs the example machine, plugin and all, and leaves nothing behind', () => {
    const chroot = base()
    const r = jail([...ids('example', chroot), '--', 'run', exampleMachine])
    expect(r).toEqual({ code: 0, stdout: 'hello from the guest\n', stderr: '' })
    expect(readdirSync(chroot)).toEqual([]) // <id>/root removed
  })

  it('the VMM runs as the given uid/gid, without capabilities, with no_new_privs, in its own namespaces (and the given network one) and cgroup', async () => {
    const chroot = base()
    const dir = fixture({
      'g.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
      'm.yaml':
        'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
    })
    const manifest = join(dir, 'm.yaml')
    // A QMP socket only to know when the VMM is up (its signal handlers set: SIGTERM then asks it
    // to stop instead of killing it).
    const sockets = join(dir, 'sockets')
    mkdirSync(sockets)
    chownSync(sockets, 65534, 65534)
    const qmp = join(sockets, 'vm.qmp')
    // A network namespace of the test's own for the VMM to join (ip-netns(8)).
    const nsName = `vmm-jail-test-${process.pid}`
    expect(spawnSync('ip', ['netns', 'add', nsName]).status).toBe(0)
    const netns = `/var/run/netns/${nsName}`
    const child = spawn(
      process.execPath,
      [
        main,
        'jail',
        ...ids('who', chroot),
        '--cgroup',
        'memory.limit_in_bytes=200MiB',
        '--cgroup',
        'pids.max=64',
        '--netns',
        netns,
        '--',
        'run',
        manifest,
        '--qmp',
        qmp,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    try {
      const pid = await jailedVmm(child, manifest, () => stderr)
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m)
      expect(status).toMatch(/^Gid:\s+65534\s+65534\s+65534\s+65534$/m)
      expect(status).toMatch(/^Groups:\s*$/m)
      expect(status).toMatch(/^CapEff:\s+0+$/m)
      expect(status).toMatch(/^CapPrm:\s+0+$/m)
      expect(status).toMatch(/^NoNewPrivs:\s+1$/m)
      // pid 2 of its own pid namespace (the jail's init is 1); its own mount, IPC and UTS namespaces.
      expect(status).toMatch(/^NSpid:\s+\d+\s+2$/m)
      for (const ns of ['pid', 'mnt', 'ipc', 'uts'])
        expect(readlinkSync(`/proc/${pid}/ns/${ns}`)).not.toBe(readlinkSync(`/proc/self/ns/${ns}`))
      expect(readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${statSync(netns).ino}]`) // --netns joined
      expect(readOr(`/proc/${pid}/limits`)).toMatch(/^Max open files\s+2048\s+2048/m)
      // Its memory cgroup is the jail's, with the limit asked for.
      const group = /^\d+:memory:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]!
      expect(group).toMatch(/\/vmm-jail-who$/)
      expect(readFileSync(join('/sys/fs/cgroup/memory', group, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(
        String(200 * 2 ** 20),
      )
      // A second controller: a group of its own in that hierarchy, joined too.
      const pids = /^\d+:pids:(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))![1]!
      expect(pids).toMatch(/\/vmm-jail-who$/)
      expect(readFileSync(join('/sys/fs/cgroup/pids', pids, 'pids.max'), 'utf8').trim()).toBe('64')
      for (let i = 0; i < 300 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 100))
      child.kill('SIGTERM') // forwarded to the VMM: the guest has no power button, so it stops
      expect(await exited(child)).toBe(0)
      expect(existsSync(join('/sys/fs/cgroup/memory', group))).toBe(false)
      expect(existsSync(join('/sys/fs/cgroup/pids', pids))).toBe(false)
      expect(readdirSync(chroot)).toEqual([])
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      spawnSync('ip', ['netns', 'del', nsName])
    }
    expect(stderr).toBe('')
  })

  it('a hostile device cannot read /etc/shadow (outside its root), nor see other processes', () => {
    expect(existsSync('/etc/shadow')).toBe(true)
    // Outside a jail (--no-jail) the probe reads it as root: the probe works, and the jail is what stops it.
    const free = spawnSync(process.execPath, [main, 'run', probeMachine(1), '--no-jail'], {
      encoding: 'utf8',
    })
    expect(free.status).toBe(10)
    const chroot = base()
    const shadow = jail([...ids('shadow', chroot), '--', 'run', probeMachine(1)])
    expect(report(shadow.stderr)).toEqual({ shadow: 'ENOENT' })
    expect(shadow.code).toBe(11)
    const ps = jail([...ids('ps', chroot), '--', 'run', probeMachine(2)])
    expect(report(ps.stderr)).toEqual({ pids: ['1', '2'] }) // the jail's init and itself
    expect(ps.code).toBe(20)
    const who = jail([...ids('whoami', chroot), '--', 'run', probeMachine(4)])
    const seen = report(who.stderr) as {
      uid: number
      hostname: string
      root: string[]
      sys: string[]
      write: string
    }
    expect(seen.uid).toBe(65534)
    expect(seen.hostname).toBe('whoami')
    // Its root holds only what was bound in: no /etc/shadow, /root, /home, /var, /boot; of /sys
    // only /sys/module/kvm_pvm where the host has it (the kvm_pvm quirks need to know).
    for (const hidden of ['root', 'home', 'var', 'boot', 'srv']) expect(seen.root).not.toContain(hidden)
    expect(seen.sys).toEqual(existsSync('/sys/module/kvm_pvm') ? ['module'] : [])
    expect(seen.write).toBe('EROFS') // its root is mounted read-only
    expect(seen.root).toEqual(expect.arrayContaining(['dev', 'proc', 'usr']))
    expect(readdirSync(chroot)).toEqual([])
  })

  it('the cgroup memory limit holds: a device that eats memory is stopped by the OOM killer, and a machine larger than the limit is refused', () => {
    const chroot = base()
    const r = jail([
      ...ids('oom', chroot),
      '--cgroup',
      'memory.limit_in_bytes=160MiB',
      '--',
      'run',
      probeMachine(3),
    ])
    expect(r.stderr).not.toMatch(/allocated/)
    expect(r.stderr).toContain(
      "vmm jail: the kernel's OOM killer ended the VMM: the jail's cgroup memory limit (167772160 bytes) was reached",
    )
    expect(r.code).toBe(1)
    const big = jail([
      ...ids('big', chroot),
      '--cgroup',
      'memory.limit_in_bytes=64MiB',
      '--',
      'run',
      probeMachine(3, '128MiB'),
    ])
    expect(big).toEqual({
      code: 2,
      stdout: '',
      stderr:
        "vmm jail: the machine asks for 134217728 bytes of RAM, more than the jail's cgroup memory limit of 67108864 bytes allows\n",
    })
    expect(readdirSync(chroot)).toEqual([])
  })

  it('the QMP socket is made in its directory, bound in from outside, and vmm ctl drives the machine from outside', async () => {
    const chroot = base()
    const dir = fixture({
      'g.bin': Uint8Array.of(0xeb, 0xfe),
      'm.yaml':
        'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
    })
    const sockets = join(dir, 'sockets')
    mkdirSync(sockets)
    chownSync(sockets, 65534, 65534)
    const qmp = join(sockets, 'vm.qmp')
    const child = spawn(
      process.execPath,
      [main, 'jail', ...ids('qmp', chroot), '--', 'run', join(dir, 'm.yaml'), '--qmp', qmp],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    try {
      for (let i = 0; i < 300 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 100))
      const ctl = (...args: string[]) =>
        spawnSync(process.execPath, [main, 'ctl', qmp, ...args], { encoding: 'utf8' })
      expect(JSON.parse(ctl('query-status').stdout)).toMatchObject({ running: true, status: 'running' })
      expect(ctl('stop').status).toBe(0)
      expect(JSON.parse(ctl('query-status').stdout)).toMatchObject({ status: 'paused' })
      expect(ctl('quit').status).toBe(0)
      expect(await exited(child)).toBe(0)
      expect(existsSync(qmp)).toBe(false) // the VMM removed its socket
      expect(readdirSync(chroot)).toEqual([])
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })

  it('--daemonize: prints the supervisor pid and returns; the jail runs on, and cleans up when the VMM ends', async () => {
    const chroot = base()
    const dir = fixture({
      'g.bin': Uint8Array.of(0xeb, 0xfe),
      'm.yaml':
        'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
    })
    const sockets = join(dir, 'sockets')
    mkdirSync(sockets)
    chownSync(sockets, 65534, 65534)
    const qmp = join(sockets, 'vm.qmp')
    const r = jail([...ids('daemon', chroot), '--daemonize', '--', 'run', join(dir, 'm.yaml'), '--qmp', qmp])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^\d+\n$/)
    const supervisor = Number(r.stdout)
    try {
      for (let i = 0; i < 300 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 100))
      const ctl = (...args: string[]) =>
        spawnSync(process.execPath, [main, 'ctl', qmp, ...args], { encoding: 'utf8' })
      expect(JSON.parse(ctl('query-status').stdout)).toMatchObject({ status: 'running' })
      expect(readdirSync(chroot)).toEqual(['daemon'])
      expect(ctl('quit').status).toBe(0)
      for (let i = 0; i < 300 && existsSync(`/proc/${supervisor}`); i++)
        await new Promise((r) => setTimeout(r, 100))
      expect(existsSync(`/proc/${supervisor}`)).toBe(false)
      expect(readdirSync(chroot)).toEqual([])
    } finally {
      if (existsSync(`/proc/${supervisor}`)) process.kill(supervisor, 'SIGTERM')
    }
  })

  it('restores a snapshot in the jail (the snapshot directory bound in read-only) and stops on SIGTERM', async () => {
    // A snapshot of a spinning raw guest, made here through the library.
    const dir = fixture({
      'g.bin': Uint8Array.of(0xeb, 0xfe),
      'm.yaml':
        'machine: { memory: 1MiB, irqchip: true }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
    })
    const snap = join(dir, 'snap')
    await snapshotRunning(join(dir, 'm.yaml'), snap)
    const chroot = base()
    const child = spawn(process.execPath, [main, 'jail', ...ids('restore', chroot), '--', 'restore', snap], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    try {
      const pid = await jailedVmm(child, snap, () => stderr)
      expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Uid:\s+65534/m)
      await vcpuRunning(pid)
      child.kill('SIGTERM')
      expect(await exited(child)).toBe(0)
      expect(readdirSync(chroot)).toEqual([])
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })

  it('bad input is answered clearly and leaves nothing behind; a jail directory not ours is refused and kept', () => {
    const chroot = base()
    const manifest = probeMachine(4)
    expect(
      jail(['--id', 'r', '--uid', '0', '--gid', '0', '--chroot-base', chroot, '--', 'run', manifest]),
    ).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^vmm jail: --uid 0 --gid 0: the VMM would keep root's privileges/),
    })
    expect(jail([...ids('m', chroot), '--', 'run', join(chroot, 'nope.yaml')])).toEqual({
      code: 2,
      stdout: '',
      stderr: `vmm jail: the manifest ${join(chroot, 'nope.yaml')} does not exist\n`,
    })
    expect(jail([...ids('bad id/..', chroot), '--', 'run', manifest]).stderr).toMatch(
      /^vmm jail: --id "bad id\/\.\.": use letters/,
    )
    expect(
      jail([...ids('c', chroot), '--cgroup', 'memory.no_such_file=1', '--', 'run', manifest]),
    ).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /^vmm jail: --cgroup memory\.no_such_file: there is no such control file/,
      ),
    })
    // The group it had made for that limit is gone again.
    const own = /^\d+:memory:(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))![1]!
    expect(existsSync(join('/sys/fs/cgroup/memory', own, 'vmm-jail-c'))).toBe(false)
    expect(readdirSync(chroot)).toEqual([])
    // Someone else's directory where the jail would go: refused, untouched.
    mkdirSync(join(chroot, 'taken'))
    writeFileSync(join(chroot, 'taken', 'theirs'), 'keep me')
    const r = jail([...ids('taken', chroot), '--', 'run', manifest])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^vmm jail: the jail directory .*\/taken already exists/)
    expect(readFileSync(join(chroot, 'taken', 'theirs'), 'utf8')).toBe('keep me')
    // A socket directory the uid cannot write: named before anything runs.
    const q = jail([...ids('q', chroot), '--', 'run', manifest, '--qmp', join(chroot, 'taken', 'vm.qmp')])
    expect(q.code).toBe(2)
    expect(q.stderr).toMatch(/^vmm jail: control\.qmp: the jailed VMM \(uid 65534, gid 65534\) cannot create/)
    expect(readdirSync(chroot)).toEqual(['taken'])
  })

  it('a supervisor killed by SIGKILL leaves its jail directory and cgroup; the next vmm jail in that chroot base removes both', async () => {
    const chroot = base()
    const dir = fixture({
      'g.bin': Uint8Array.of(0xeb, 0xfe), // jmp $
      'm.yaml':
        'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
    })
    const manifest = join(dir, 'm.yaml')
    const child = spawn(
      process.execPath,
      [main, 'jail', ...ids('killed', chroot), '--cgroup', 'pids.max=64', '--', 'run', manifest],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    const pid = await jailedVmm(child, manifest, () => stderr)
    await vcpuRunning(pid)
    const cgroups = readFileSync(join(chroot, 'killed', 'owner'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('cgroup '))
      .map((l) => l.slice(7))
    expect(cgroups).toHaveLength(1)
    expect(existsSync(cgroups[0]!)).toBe(true)
    const killed = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await killed
    for (let i = 0; i < 1000 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 5))
    expect(existsSync(`/proc/${pid}`)).toBe(false)
    expect(readdirSync(chroot)).toEqual(['killed'])
    const next = jail([...ids('next', chroot), '--', 'run', probeMachine(5)])
    expect(next.code, next.stderr).toBe(50)
    expect(readdirSync(chroot)).toEqual([])
    expect(existsSync(cgroups[0]!)).toBe(false)
  })
})
