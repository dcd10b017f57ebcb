// The default jail of `vmm run` / `vmm restore` on the real /dev/kvm, as root (issue 17: confined
// unless --no-jail): the VMM builds its machine as root inside its jail, then runs the guest as a
// uid of its own with no capabilities, no_new_privs and seccomp, and sees only its jail; --no-jail
// is not confined. The hostile device (fixtures/hostile-plugin.mjs) reports what the VMM holds.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
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
const heldPlugin = fileURLToPath(new URL('./fixtures/held-restore-plugin.mjs', import.meta.url))
const JAIL_ID_BASE = 0x70000000 // jail/default.ts

const skip = jailUnavailable('the default jail needs root')
if (skip) console.warn(`[default jail kvm tests skipped] ${skip}`)

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** A machine whose guest asks the hostile probe for probe `value` (or, without the probe, spins: `jmp $`). */
function machine(value: number | 'spin', extra = ''): string {
  const guest = value === 'spin' ? Uint8Array.of(0xeb, 0xfe) : Uint8Array.of(0xb0, value, 0xe6, 0xf4, 0xf4)
  const dir = fixture({
    'g.bin': guest,
    'm.yaml':
      `plugins: [${JSON.stringify(plugin)}, "@vmm/virtio"]\nmachine: { memory: 1MiB, irqchip: true }\ncomponents:\n` +
      '  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n' +
      (value === 'spin' ? '' : '  probe: { type: hostile-probe, resources: { port: 0xf4 } }\n') +
      extra,
  })
  dirs.push(dir)
  return join(dir, 'm.yaml')
}

function vmm(args: readonly string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stderr: r.stderr }
}

function report(stderr: string): Record<string, unknown> {
  const m = /^vmm: hostile-probe: (.*)$/m.exec(stderr)
  if (!m) throw new Error(`no probe report in: ${stderr}`)
  return JSON.parse(m[1]!) as Record<string, unknown>
}

/** The processes below `pid`. */

/** The VMM below `child` once its guest runs: the process whose thread vcpu0 exists, and the jail's init. */
async function runningVmm(child: ChildProcess): Promise<{ vmm: number; init: number }> {
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`vmm exited (${child.exitCode}) early`)
    const below = descendants(child.pid!)
    const vmmPid = below.find((p) =>
      tasks(p).some((t) => readOr(`/proc/${p}/task/${t}/comm`).trim() === 'vcpu0'),
    )
    if (vmmPid !== undefined && /^Uid:\s+(\d+)/m.exec(readOr(`/proc/${vmmPid}/status`))?.[1] !== '0') {
      const init = below.find((p) => /^NSpid:\s+\d+\s+1$/m.test(readOr(`/proc/${p}/status`)))!
      return { vmm: vmmPid, init }
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('the jailed VMM never ran its guest')
}

/**
 * A snapshot, made here through the library, of a spinning raw guest (`jmp $`) with the components
 * `extra` adds, from `plugins`: <dir>/<name>, its directory removed after the test.
 */
async function spinSnapshot(
  name: string,
  plugins: readonly string[],
  extra = '',
  files: Record<string, Uint8Array> = {},
): Promise<string> {
  const dir = fixture({
    ...files,
    'g.bin': Uint8Array.of(0xeb, 0xfe),
    'm.yaml':
      `plugins: ${JSON.stringify(plugins)}\nmachine: { memory: 1MiB, irqchip: true }\ncomponents:\n` +
      `  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n${extra}`,
  })
  dirs.push(dir)
  const snap = join(dir, name)
  await snapshotRunning(join(dir, 'm.yaml'), snap)
  return snap
}

/** The jail directories in /run/vmm-jail whose name starts with `stem-` (default.ts defaultJailName). */
const jailDirs = (stem: string) =>
  (existsSync('/run/vmm-jail') ? readdirSync('/run/vmm-jail') : []).filter((d) => d.startsWith(`${stem}-`))

describe.skipIf(skip)('vmm run confined by default, on /dev/kvm', { timeout: 240_000 }, () => {
  it('runs the guest as a uid of its own, without capabilities, with no_new_privs and seccomp, seeing only its jail; --no-jail does not', () => {
    const jailed = vmm(['run', machine(5)])
    expect(jailed.code).toBe(50)
    const seen = report(jailed.stderr)
    const uid = Number(String(seen.Uid).split('\t')[0])
    expect(uid).toBeGreaterThan(JAIL_ID_BASE)
    expect(seen).toMatchObject({
      Uid: `${uid}\t${uid}\t${uid}\t${uid}`,
      Gid: `${uid}\t${uid}\t${uid}\t${uid}`,
      Groups: '',
      CapInh: '0000000000000000',
      CapPrm: '0000000000000000',
      CapEff: '0000000000000000',
      CapAmb: '0000000000000000',
      NoNewPrivs: '1',
      Seccomp: '2',
      pids: ['1', '2'], // its pid namespace: the jail's init and itself
    })
    const free = vmm(['run', machine(5), '--no-jail'])
    expect(free.code).toBe(50)
    const host = report(free.stderr)
    expect(host.Uid).toBe('0\t0\t0\t0')
    expect(host.CapEff).not.toBe('0000000000000000')
    expect((host.pids as string[]).length).toBeGreaterThan(2)
    expect(host.pids).toContain(String(process.pid))
    // Two runs, two uids (one per VM: jail/default.ts).
    const again = report(vmm(['run', machine(5)]).stderr)
    expect(again.Uid).not.toBe(seen.Uid)
  })

  it('a hostile device cannot read /etc/shadow under the default jail; with --no-jail it can', () => {
    expect(existsSync('/etc/shadow')).toBe(true)
    const jailed = vmm(['run', machine(1)])
    expect(report(jailed.stderr)).toEqual({ shadow: 'ENOENT' })
    expect(jailed.code).toBe(11)
    const free = vmm(['run', machine(1), '--no-jail'])
    expect(report(free.stderr)).toMatchObject({ shadow: 'read' })
    expect(free.code).toBe(10)
    const who = report(vmm(['run', machine(4)]).stderr) as { root: string[]; write: string }
    for (const hidden of ['root', 'home', 'var', 'boot', 'srv']) expect(who.root).not.toContain(hidden)
    expect(who.write).toBe('EROFS')
  })

  it('every thread drops, the init keeps only CAP_KILL; QMP, x-snapshot-save and restore work in a root-only directory, and nothing is left behind', async () => {
    // A directory only root may enter (mkdtemp: 0700): the VMM needs no chown of it.
    const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-default-'))
    dirs.push(dir)
    const qmp = join(dir, 'qmp.sock')
    const before = new Set(existsSync('/run/vmm-jail') ? readdirSync('/run/vmm-jail') : [])
    const child = spawn(process.execPath, [main, 'run', machine('spin'), '--qmp', qmp], { stdio: 'pipe' })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    try {
      const { vmm: pid, init } = await runningVmm(child)
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readOr(`/proc/${pid}/status`))![1])
      expect(uid).toBe(JAIL_ID_BASE + child.pid!)
      const threads = tasks(pid)
      expect(threads.length).toBeGreaterThan(1)
      for (const t of threads) {
        const s = readOr(`/proc/${pid}/task/${t}/status`)
        expect(s, `thread ${t}`).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
        expect(s, `thread ${t}`).toMatch(/^CapEff:\s+0+$/m)
        expect(s, `thread ${t}`).toMatch(/^NoNewPrivs:\s+1$/m)
      }
      // The jail's init (pid 1 of the VMM's pid namespace): root, CAP_KILL (5) alone, everywhere.
      const initStatus = readOr(`/proc/${init}/status`)
      for (const set of ['CapEff', 'CapPrm', 'CapBnd'])
        expect(initStatus).toMatch(new RegExp(`^${set}:\\s+0000000000000020$`, 'm'))
      for (const ns of ['pid', 'mnt', 'ipc', 'uts'])
        expect(readlinkSync(`/proc/${pid}/ns/${ns}`)).not.toBe(readlinkSync(`/proc/self/ns/${ns}`))
      const ctl = (...a: string[]) =>
        spawnSync(process.execPath, [main, 'ctl', qmp, ...a], { encoding: 'utf8' })
      expect(ctl('query-status').stdout).toContain('running')
      expect(ctl('stop').status).toBe(0)
      const snap = join(dir, 'snap')
      const saved = ctl('x-snapshot-save', JSON.stringify({ dir: snap }))
      expect(saved.status, saved.stderr).toBe(0)
      // Written through the idmapped bind: on disk the directory's owner's (root), not the jail's uid.
      for (const f of readdirSync(snap)) expect(statSync(join(snap, f)).uid, f).toBe(0)
      expect(ctl('quit').status).toBe(0)
      expect(await exited(child)).toBe(0)
      expect(existsSync(qmp)).toBe(false) // its socket, removed though it was made as root
      // The snapshot, restored under the default jail, paused, and quit over its QMP socket.
      const restored = spawn(process.execPath, [main, 'restore', snap, '--paused', '--qmp', qmp], {
        stdio: 'pipe',
      })
      for (let i = 0; i < 600 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 50))
      const rpid = descendants(restored.pid!).find((p) => readOr(`/proc/${p}/cmdline`).includes('restore'))
      for (let i = 0; i < 200 && !/"paused"/.test(ctl('query-status').stdout); i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(readOr(`/proc/${rpid}/status`)).toMatch(
        new RegExp(`^Uid:\\s+${JAIL_ID_BASE + restored.pid!}\\s`, 'm'),
      )
      expect(ctl('quit').status).toBe(0)
      expect(await exited(restored)).toBe(0)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    const after = existsSync('/run/vmm-jail') ? readdirSync('/run/vmm-jail') : []
    expect(after.filter((d) => !before.has(d) && d.startsWith('m-'))).toEqual([])
    expect(stderr).toBe('')
  })

  it('a TAP in a network namespace the test made is opened by the jailed VMM', async () => {
    const ns = `vmm-jd-${process.pid}`
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0)
    try {
      const tap = 'jdtap0'
      expect(
        spawnSync('ip', ['netns', 'exec', ns, 'ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']).status,
      ).toBe(0)
      const m = machine(
        'spin',
        `  net: { type: virtio-net, tap: ${tap}, resources: { regs: 0xd0000000, irq: 5 } }\n`,
      )
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, main, 'run', m], { stdio: 'pipe' })
      try {
        const { vmm: pid } = await runningVmm(child)
        expect(readOr(`/proc/${pid}/status`)).toMatch(/^CapEff:\s+0+$/m)
        // Its /dev/net/tun descriptor is attached to the TAP (fdinfo's iff line, tun's show_fdinfo).
        const iffs = readdirSync(`/proc/${pid}/fd`)
          .map((fd) => readOr(`/proc/${pid}/fdinfo/${fd}`))
          .filter((t) => /^iff:/m.test(t))
        expect(iffs.join('')).toMatch(new RegExp(`^iff:\\s+${tap}$`, 'm'))
      } finally {
        child.kill('SIGINT')
        await exited(child)
      }
    } finally {
      spawnSync('ip', ['netns', 'del', ns])
    }
  })

  it('not root: runs unconfined with a warning naming --no-jail (which silences it)', () => {
    const m = machine(5)
    chmodSync(join(m, '..'), 0o755) // nobody reads the manifest
    const asNobody = (extra: string[]) =>
      spawnSync(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          main,
          'run',
          m,
          '--hypervisor',
          'test',
          ...extra,
        ],
        {
          encoding: 'utf8',
        },
      )
    const warned = asNobody([])
    expect(warned.stderr).toMatch(/^vmm: not confined: the default jail needs root .*uid 65534.*--no-jail/m)
    expect(warned.status).toBe(50) // the run went on, unconfined: the probe answered
    expect(report(warned.stderr).Uid).toBe('65534\t65534\t65534\t65534')
    const quiet = asNobody(['--no-jail'])
    expect(quiet.stderr).not.toMatch(/not confined/)
    expect(quiet.status).toBe(50)
  })

  it('a SIGTERM while the restore is still being set up (the machine not yet resumed) stops it cleanly', async () => {
    // held-restore's restoreState waits for the SIGTERM: the signal lands inside Machine.restore,
    // before the machine exists for `vmm restore`, whatever the load on the host.
    const snap = await spinSnapshot('held-snap', [heldPlugin], '  held: { type: held-restore }\n')
    const before = jailDirs('held-snap')
    const child = spawn(process.execPath, [main, 'restore', snap], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    const waiting = new Promise<void>((resolve) =>
      child.stderr!.on('data', (d) => {
        stderr += d
        if (stderr.includes('held-restore: waiting for SIGTERM')) resolve()
      }),
    )
    try {
      await Promise.race([waiting, exited(child)])
      expect(stderr).toContain('held-restore: waiting for SIGTERM')
      child.kill('SIGTERM') // forwarded by the supervisor and the jail's init to the VMM
      expect(await exited(child), stderr).toBe(0)
      expect(stderr).toBe('held-restore: waiting for SIGTERM\n') // no "machine is stopped; expected paused"
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    expect(jailDirs('held-snap').filter((d) => !before.includes(d))).toEqual([])
  })

  it("restore overrides are bound into the jail: a clone's disk copy (a relative path), console file and QMP socket in new directories; a bad one is answered as without the jail", async () => {
    const snap = await spinSnapshot(
      'ovr-snap',
      ['@vmm/virtio', '@vmm/board-micro'],
      '  serial: { type: serial, console: file, path: serial.log, resources: { port: 0x3f8, irq: 4 } }\n' +
        '  disk: { type: virtio-blk, path: disk.img, resources: { regs: 0xd0000000, irq: 5 } }\n',
      { 'disk.img': new Uint8Array(8192).fill(7) },
    )
    const before = jailDirs('ovr-snap')
    // The clone's own places, none of them where the snapshot's machine had its files.
    const cloneDir = mkdtempSync(join(tmpdir(), 'vmm-jail-clone-'))
    const out = mkdtempSync(join(tmpdir(), 'vmm-jail-out-'))
    dirs.push(cloneDir, out)
    copyFileSync(join(snap, '..', 'disk.img'), join(cloneDir, 'clone.img'))
    const qmp = join(out, 'qmp.sock')
    const log = join(out, 'clone.log')
    const overrides = ['--disk', 'disk=clone.img', '--set', `serial.path=${log}`, '--qmp', qmp]
    const child = spawn(process.execPath, [main, 'restore', snap, ...overrides], {
      cwd: cloneDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr!.on('data', (d) => (stderr += d))
    const ctl = (...a: string[]) =>
      spawnSync(process.execPath, [main, 'ctl', qmp, ...a], { encoding: 'utf8' })
    try {
      for (let i = 0; i < 600 && !existsSync(qmp) && child.exitCode === null; i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(existsSync(qmp), stderr).toBe(true)
      for (let i = 0; i < 200 && !/"running"/.test(ctl('query-status').stdout); i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(ctl('query-status').stdout).toContain('running')
      expect(existsSync(log)).toBe(true) // the console file, made where the override put it
      expect(ctl('quit').status).toBe(0)
      expect(await exited(child), stderr).toBe(0)
      expect(stderr).toBe('')
      expect(existsSync(qmp)).toBe(false)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    // A directory that is not there: named, before anything is made.
    const gone = join(out, 'none', 'clone.log')
    const r = spawnSync(process.execPath, [main, 'restore', snap, '--set', `serial.path=${gone}`], {
      encoding: 'utf8',
    })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`serial.path: the directory of ${gone} does not exist`)
    // A component the snapshot lacks, a disk that is not there: the restore's own errors, as
    // without the jail.
    for (const bad of [
      ['--set', 'nosuch.path=/x'],
      ['--disk', 'disk=missing.img'],
    ]) {
      const jailed = spawnSync(process.execPath, [main, 'restore', snap, ...bad], {
        cwd: cloneDir,
        encoding: 'utf8',
      })
      const free = spawnSync(process.execPath, [main, 'restore', snap, ...bad, '--no-jail'], {
        cwd: cloneDir,
        encoding: 'utf8',
      })
      expect(jailed.status, jailed.stderr).toBe(1)
      expect(jailed.stderr).toBe(free.stderr)
      expect(jailed.stderr).toMatch(/nosuch|disk\.path=missing\.img/)
    }
    expect(jailDirs('ovr-snap').filter((d) => !before.includes(d))).toEqual([])
  })

  it('a `vmm run` killed by SIGKILL leaves no process, and the next jailed run removes the jail it left (rmdir only: one not empty is left, and named)', async () => {
    const child = spawn(process.execPath, [main, 'run', machine('spin')], { stdio: 'pipe' })
    const { vmm: vmmPid, init } = await runningVmm(child)
    const helper = descendants(child.pid!)[0]!
    expect(readOr(`/proc/${helper}/cmdline`)).toContain('vmm-jail')
    // Its jail directory: the one whose owner record names this supervisor (jail/owner.ts).
    const record = (d: string) => readOr(join('/run/vmm-jail', d, 'owner'))
    const mine = readdirSync('/run/vmm-jail').filter((d) => record(d).includes(`\npid ${child.pid}\n`))
    expect(mine).toHaveLength(1)
    const jailDir = join('/run/vmm-jail', mine[0]!)
    const cgroups = record(mine[0]!)
      .split('\n')
      .filter((l) => l.startsWith('cgroup '))
      .map((l) => l.slice(7))
    for (const g of cgroups) expect(existsSync(g), g).toBe(true)

    const gone = (pid: number) => {
      const stat = readOr(`/proc/${pid}/stat`)
      return stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
    }
    const killed = exited(child) // before the kill: a child ended by a signal keeps exitCode null
    const t0 = performance.now()
    child.kill('SIGKILL')
    for (let i = 0; i < 1000 && ![helper, init, vmmPid].every(gone); i++)
      await new Promise((r) => setTimeout(r, 5))
    const ms = performance.now() - t0
    expect({ helper: gone(helper), init: gone(init), vmm: gone(vmmPid) }).toEqual({
      helper: true,
      init: true,
      vmm: true,
    })
    console.log(`[jail] SIGKILL of the supervisor: helper, init and VMM gone after ${ms.toFixed(1)} ms`)
    await killed
    // What it could not remove: its jail directory (root within) and its cgroups.
    expect(existsSync(join(jailDir, 'root'))).toBe(true)

    // A leftover someone put a file in: its owner is gone too (our pid, another start time).
    const kept = join('/run/vmm-jail', `kept-${process.pid}`)
    mkdirSync(join(kept, 'root'), { recursive: true })
    writeFileSync(
      join(kept, 'owner'),
      record(mine[0]!)
        .replace(/^pid \d+$/m, `pid ${process.pid}`)
        .replace(/^start \d+$/m, 'start 0')
        .replace(/^cgroup .*\n/gm, ''),
    )
    writeFileSync(join(kept, 'root', 'not-vmm-s'), 'x')
    try {
      const next = vmm(['run', machine(5)])
      expect(next.code).toBe(50)
      expect(existsSync(jailDir)).toBe(false)
      for (const g of cgroups) expect(existsSync(g), g).toBe(false)
      expect(next.stderr).toContain(
        `vmm jail: left behind by a run that ended without cleaning up (not empty or still in use): ${join(kept, 'root')} (ENOTEMPTY; left by pid ${process.pid})`,
      )
      expect(readFileSync(join(kept, 'root', 'not-vmm-s'), 'utf8')).toBe('x')
      expect(existsSync(join(kept, 'owner'))).toBe(true)
    } finally {
      rmSync(kept, { recursive: true, force: true }) // the test's own
    }
  })
})
