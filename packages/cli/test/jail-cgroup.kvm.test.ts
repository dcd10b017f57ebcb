// The jail's cgroup limits on the real host, as root: each limit goes to the hierarchy that has its
// controller (cgroup.ts). On our hybrid hosts the v2 hierarchy (/sys/fs/cgroup/unified) offers only
// hugetlb, so that is the v2 limit shown to hold: a device (fixtures/hugepage-plugin.mjs) in the
// jailed VMM touches 2 MiB hugepages; under hugetlb.2MB.max it gets them, beyond it the kernel
// sends SIGBUS, and the same touch unjailed works (the pool had the pages: the limit stopped it).
// And the default jail's limits: `vmm run --jail-cgroup/--jail-rlimit/--jail-netns` (vmm jail's
// --cgroup/--rlimit/--netns) put the VMM in its group with the limit, with the rlimits, in the
// namespace; a bad value is refused before anything is made, naming the option.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Machine } from '@vmm/core'
import { hypervisorProvider } from '@vmm/kvm'
import { afterEach, describe, expect, it } from 'vitest'
import { cgroupHierarchies, type Hierarchy, hierarchyOf } from '../src/jail/cgroup.js'
import { fixture } from './fixtures.js'
import { descendants, exited, jailUnavailable, readOr, tasks } from './jail-fixtures.js'

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const hugepagePlugin = fileURLToPath(new URL('./fixtures/hugepage-plugin.mjs', import.meta.url))
const NOBODY = '65534'
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages'

const skip = jailUnavailable('cgroups and the jail need root')
if (skip) console.warn(`[jail cgroup kvm tests skipped] ${skip}`)

/** Why the v2 hugetlb test cannot run here, if it cannot: it needs hugetlb in a cgroup2 hierarchy. */
function noV2Hugetlb(): string | undefined {
  if (skip) return skip
  const h = hierarchyOf('hugetlb', cgroupHierarchies())
  if (h === undefined) return 'no cgroup hierarchy here has the hugetlb controller'
  if (h.version !== 2) return `hugetlb is bound to the cgroup v1 hierarchy ${h.mount}, not v2`
  if (!existsSync(NR_HUGEPAGES)) return `no ${NR_HUGEPAGES} (a kernel without hugetlbfs)`
  return undefined
}
const skipV2 = noV2Hugetlb()
if (!skip && skipV2) console.warn(`[cgroup v2 hugetlb test skipped] ${skipV2}`)

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
const tempDir = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(d)
  return d
}

/** A raw guest that writes `value` to port 0xf4 (`mov al, v; out 0xf4, al; hlt`), where `device` listens. */
function portMachine(plugin: string, device: string, value: number): string {
  const dir = fixture({
    'g.bin': Uint8Array.of(0xb0, value, 0xe6, 0xf4, 0xf4),
    'm.yaml':
      `plugins: [${JSON.stringify(plugin)}]\nmachine: { memory: 1MiB }\ncomponents:\n` +
      '  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n' +
      `  probe: { type: ${device}, resources: { port: 0xf4 } }\n`,
  })
  dirs.push(dir)
  return join(dir, 'm.yaml')
}

function vmm(args: readonly string[]) {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const meminfo = (field: string) =>
  Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))?.[1])

describe.skipIf(skipV2)('cgroup v2 limits in the jail', { timeout: 240_000 }, () => {
  it('hugetlb.2MB.max holds: 2 pages under a 4 MiB limit are touched, a 3rd gets SIGBUS; unjailed all 3 work', () => {
    const v2 = hierarchyOf('hugetlb', cgroupHierarchies())!
    // The pool: at least 4 free 2 MiB pages for the run (raised for the test, restored after).
    const nrBefore = readFileSync(NR_HUGEPAGES, 'utf8').trim()
    const topControl = join(v2.mount, 'cgroup.subtree_control')
    const topHadHugetlb = readFileSync(topControl, 'utf8').split(/\s+/).includes('hugetlb')
    // A parent group of the test's own (--parent-cgroup), whose hierarchical hugetlb.2MB.events
    // outlives the jail's group and says the limit, not the pool, refused the page.
    const parentName = `vmm-jail-cgtest-${process.pid}`
    const parent = join(v2.mount, parentName)
    mkdirSync(parent)
    try {
      writeFileSync(
        NR_HUGEPAGES,
        String(meminfo('HugePages_Total') + Math.max(0, 4 - meminfo('HugePages_Free'))),
      )
      expect(meminfo('HugePages_Free')).toBeGreaterThanOrEqual(4)
      const chroot = tempDir('vmm-jail-base-')
      const jail = (id: string, pages: number) =>
        vmm([
          'jail',
          '--id',
          id,
          '--uid',
          NOBODY,
          '--gid',
          NOBODY,
          '--chroot-base',
          chroot,
          '--parent-cgroup',
          `/${parentName}`,
          '--cgroup',
          'hugetlb.2MB.max=4MiB',
          '--rlimit',
          'core=0',
          '--',
          'run',
          portMachine(hugepagePlugin, 'hugepage-probe', pages),
        ])
      const under = jail('hp-under', 2)
      expect(under.code).toBe(60)
      expect(under.stderr).toMatch(/^vmm: hugepages: \{"touched":2\}$/m)
      // The controller was enabled from the top down to the parent, and that was said.
      expect(under.stderr).toContain(
        `vmm jail: cgroup v2: enabled (and left so) ${join(parent, 'cgroup.subtree_control')}: +hugetlb\n`,
      )
      if (!topHadHugetlb)
        expect(under.stderr).toContain(`vmm jail: cgroup v2: enabled (and left so) ${topControl}: +hugetlb\n`)
      expect(readFileSync(join(parent, 'hugetlb.2MB.events'), 'utf8')).toMatch(/^max 0$/m)

      const over = jail('hp-over', 3)
      expect(over.stderr).not.toMatch(/touched/)
      expect(over.stderr).toContain(
        "vmm jail: the VMM got SIGBUS touching hugepages beyond the jail's cgroup hugetlb limit (hugetlb.2MB.events: max 1)\n",
      )
      expect(over.stderr).not.toMatch(/enabled/) // already enabled by the first run
      expect(over.code).toBe(1)
      expect(readFileSync(join(parent, 'hugetlb.2MB.events'), 'utf8')).toMatch(/^max 1$/m)

      // The same 3 pages without the jail (nor its limit): the pool had them.
      const free = vmm(['run', portMachine(hugepagePlugin, 'hugepage-probe', 3), '--no-jail'])
      expect(free.stderr).toMatch(/^vmm: hugepages: \{"touched":3\}$/m)
      expect(free.code).toBe(60)

      // Both jails' groups are gone again; so are their directories.
      expect(readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory())).toEqual([])
      expect(readdirSync(chroot)).toEqual([])
    } finally {
      writeFileSync(NR_HUGEPAGES, nrBefore)
      rmdirSync(parent)
      if (!topHadHugetlb) {
        try {
          writeFileSync(topControl, '-hugetlb') // as the host was; refused while another group uses it
        } catch {}
      }
    }
  })
})

/** The jailed VMM below `child` once its guest runs (its vcpu0 thread exists) and it has dropped root. */
async function runningVmm(child: ChildProcess, stderr: () => string): Promise<number> {
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`vmm exited (${child.exitCode}) early: ${stderr()}`)
    const pid = descendants(child.pid!).find((p) =>
      tasks(p).some((t) => readOr(`/proc/${p}/task/${t}/comm`).trim() === 'vcpu0'),
    )
    if (pid !== undefined && /^Uid:\s+(\d+)/m.exec(readOr(`/proc/${pid}/status`))?.[1] !== '0') return pid
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error('the jailed VMM never ran its guest')
}

/** The group of `pid` in hierarchy `h` (/proc/<pid>/cgroup). */
function groupOf(pid: number, h: Hierarchy): string {
  const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
  const re =
    h.version === 2 ? /^0::(.*)$/m : new RegExp(`^\\d+:[^:]*\\b${h.controllers[0]}\\b[^:]*:(.*)$`, 'm')
  return re.exec(text)![1]!
}

/** A spinning raw guest (`jmp $`) in a manifest named jl.yaml: its default jails are jl-<8 hex>. */
function spinMachine(): string {
  const dir = fixture({
    'g.bin': Uint8Array.of(0xeb, 0xfe),
    'jl.yaml':
      'machine: { memory: 1MiB }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
  })
  dirs.push(dir)
  return join(dir, 'jl.yaml')
}
const jailDirs = () =>
  (existsSync('/run/vmm-jail') ? readdirSync('/run/vmm-jail') : []).filter((d) => d.startsWith('jl-'))

describe.skipIf(skip)(
  "the default jail's limits (vmm run --jail-cgroup, --jail-rlimit, --jail-netns)",
  { timeout: 240_000 },
  () => {
    it('put the VMM in its cgroup with the limit, with the rlimits, in the namespace; all removed after', async () => {
      const hs = cgroupHierarchies()
      const mem = hierarchyOf('memory', hs)!
      const pids = hierarchyOf('pids', hs)!
      const memFile = mem.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'
      const ns = `vmm-jl-${process.pid}`
      expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0)
      const netns = `/var/run/netns/${ns}`
      const dir = tempDir('vmm-jail-limits-')
      const before = jailDirs()
      const qmp = join(dir, 'qmp.sock')
      const child = spawn(
        process.execPath,
        [
          main,
          'run',
          spinMachine(),
          '--qmp',
          qmp,
          '--jail-cgroup',
          `${memFile}=200MiB`,
          '--jail-cgroup=pids.max=64',
          '--jail-rlimit',
          'nofile=512',
          '--jail-rlimit',
          'fsize=1048576:2097152',
          '--jail-rlimit',
          'core=0',
          '--jail-netns',
          netns,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr!.on('data', (d) => (stderr += d))
      try {
        const pid = await runningVmm(child, () => stderr)
        const group = groupOf(pid, mem)
        expect(group).toMatch(/\/vmm-jail-jl-[0-9a-f]{8}$/)
        expect(readFileSync(join(mem.mount, group, memFile), 'utf8').trim()).toBe(String(200 * 2 ** 20))
        const pidsGroup = groupOf(pid, pids)
        expect(pidsGroup).toMatch(/\/vmm-jail-jl-[0-9a-f]{8}$/)
        expect(readFileSync(join(pids.mount, pidsGroup, 'pids.max'), 'utf8').trim()).toBe('64')
        const limits = readOr(`/proc/${pid}/limits`)
        // (nofile's soft limit Node raises to the hard one at its start: src/node.cc.)
        expect(limits).toMatch(/^Max open files\s+512\s+512\s+files/m)
        expect(limits).toMatch(/^Max file size\s+1048576\s+2097152\s+bytes/m)
        expect(limits).toMatch(/^Max core file size\s+0\s+0\s/m)
        expect(readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${statSync(netns).ino}]`)
        // The options are the jail's: the VMM inside is not given them.
        expect(readOr(`/proc/${pid}/cmdline`)).not.toContain('--jail-')
        for (let i = 0; i < 300 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 50))
        expect(spawnSync(process.execPath, [main, 'ctl', qmp, 'quit']).status).toBe(0)
        expect(await exited(child)).toBe(0)
        expect(existsSync(join(mem.mount, group))).toBe(false)
        expect(existsSync(join(pids.mount, pidsGroup))).toBe(false)
        expect(jailDirs(before)).toEqual([])
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL')
        spawnSync('ip', ['netns', 'del', ns])
      }
      expect(stderr).toBe('')
    })

    it('vmm restore takes them too: the restored VMM has the rlimit and is in the pids group', async () => {
      // A snapshot of a spinning raw guest, made here through the library.
      const dir = tempDir('vmm-jail-limits-')
      writeFileSync(join(dir, 'g.bin'), Uint8Array.of(0xeb, 0xfe))
      writeFileSync(
        join(dir, 'jl.yaml'),
        'machine: { memory: 1MiB, irqchip: true }\ncomponents:\n  guest: { type: raw-image, file: g.bin, address: 0x7c00 }\n',
      )
      const snap = join(dir, 'snap')
      const hypervisor = await hypervisorProvider.open()
      try {
        const m = await Machine.fromFile(join(dir, 'jl.yaml'), { hypervisor })
        const done = m.run()
        for (let i = 0; i < 100 && m.state !== 'running'; i++) await new Promise((r) => setTimeout(r, 20))
        await m.pause()
        await m.snapshot(snap)
        await m.stop()
        await done
        await m.dispose()
      } finally {
        hypervisor.dispose()
      }
      const pids = hierarchyOf('pids', cgroupHierarchies())!
      const qmp = join(dir, 'qmp.sock')
      const child = spawn(
        process.execPath,
        [
          main,
          'restore',
          snap,
          '--qmp',
          qmp,
          '--jail-rlimit',
          'fsize=4096:8192',
          '--jail-cgroup',
          'pids.max=32',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr!.on('data', (d) => (stderr += d))
      try {
        const pid = await runningVmm(child, () => stderr)
        expect(readOr(`/proc/${pid}/limits`)).toMatch(/^Max file size\s+4096\s+8192\s+bytes/m)
        const group = groupOf(pid, pids)
        expect(group).toMatch(/\/vmm-jail-snap-[0-9a-f]{8}$/)
        expect(readFileSync(join(pids.mount, group, 'pids.max'), 'utf8').trim()).toBe('32')
        for (let i = 0; i < 300 && !existsSync(qmp); i++) await new Promise((r) => setTimeout(r, 50))
        expect(spawnSync(process.execPath, [main, 'ctl', qmp, 'quit']).status).toBe(0)
        expect(await exited(child)).toBe(0)
        expect(existsSync(join(pids.mount, group))).toBe(false)
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL')
      }
      expect(stderr).toBe('')
    })

    it('a bad value is refused before anything is made, naming the option (run and restore)', () => {
      const m = spinMachine()
      const mem = hierarchyOf('memory', cgroupHierarchies())!
      const own = join(mem.mount, groupOf(process.pid, mem))
      const groupsBefore = readdirSync(own)
      const groups = () =>
        readdirSync(own).filter((d) => d.startsWith('vmm-jail-jl-') && !groupsBefore.includes(d))
      const before = jailDirs()
      const refused = (args: string[], message: string | RegExp) => {
        const r = vmm(args)
        expect(r.stdout).toBe('')
        if (typeof message === 'string') expect(r.stderr).toBe(`vmm: ${message}\n`)
        else expect(r.stderr).toMatch(message)
        expect(r.code).toBe(2)
      }
      refused(
        ['run', m, '--jail-cgroup', 'memory.limit_in_bytes=lots'],
        '--jail-cgroup memory.limit_in_bytes=lots: not a size (e.g. 512MiB, max)',
      )
      refused(
        ['run', m, '--jail-cgroup', 'memory'],
        '--jail-cgroup "memory": expected <controller>.<file>=<value>, e.g. memory.limit_in_bytes=512MiB',
      )
      refused(
        ['run', m, '--jail-rlimit', 'nofile=300:200'],
        '--jail-rlimit "nofile=300:200": the soft limit 300 is above the hard limit 200',
      )
      refused(
        ['run', m, '--jail-rlimit', 'bogus=1'],
        /^vmm: --jail-rlimit "bogus=1": expected <name>=<n>\[:<hard>\]/,
      )
      refused(
        ['run', m, '--jail-netns', '/nonexistent/netns'],
        '--jail-netns /nonexistent/netns: there is no such file (a network namespace: ip netns add <name>)',
      )
      // A control file the host lacks: its group is made to look, and removed again.
      refused(
        ['run', m, '--jail-cgroup', 'memory.no_such_file=1'],
        /^vmm: --jail-cgroup memory\.no_such_file: there is no such control file in \S+\/vmm-jail-jl-[0-9a-f]{8} \(cgroup v\d/,
      )
      refused(
        ['restore', join(m, '..', 'nosnap'), '--jail-rlimit', 'nofile=x'],
        /^vmm: --jail-rlimit "nofile=x"/,
      )
      refused(
        ['run', m, '--no-jail', '--jail-cgroup', 'pids.max=1'],
        /^vmm: --jail-cgroup, --jail-rlimit, --jail-netns limit the default jail: not with --no-jail/,
      )
      // vmm jail's own are --cgroup etc. before --: a --jail-* after it is refused, not ignored.
      refused(
        ['jail', '--id', 'x', '--uid', NOBODY, '--gid', NOBODY, '--', 'run', m, '--jail-rlimit', 'core=0'],
        /^vmm jail: --jail-rlimit after -- limits vmm run's default jail; vmm jail takes --rlimit before --\n$/,
      )
      // Not root: the default jail cannot be made, so its limits are refused, not dropped silently.
      const nobody = spawnSync(process.execPath, [main, 'run', m, '--jail-rlimit', 'core=0'], {
        encoding: 'utf8',
        uid: 65534,
        gid: 65534,
      })
      expect(nobody.stderr).toBe(
        'vmm: --jail-cgroup, --jail-rlimit, --jail-netns limit the default jail, which needs root (this is uid 65534): run as root, or without them\n',
      )
      expect(nobody.status).toBe(2)
      expect(groups()).toEqual([])
      expect(jailDirs(before)).toEqual([])
    })
  },
)
