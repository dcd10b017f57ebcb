// The jail's cgroup limits on the real host, as root: each limit goes to the hierarchy that has its
// controller (cgroup.ts). On our hybrid hosts the v2 hierarchy (/sys/fs/cgroup/unified) offers only
// hugetlb, so that is the v2 limit shown to hold: a device (fixtures/hugepage-plugin.mjs) in the
// jailed VMM touches 2 MiB hugepages; under hugetlb.2MB.max it gets them, beyond it the kernel
// sends SIGBUS, and the same touch unjailed works (the pool had the pages: the limit stopped it).
import { spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { jailHelperPath } from '@vmm/host'
import { Kvm } from '@vmm/kvm'
import { afterEach, describe, expect, it } from 'vitest'
import { cgroupHierarchies, hierarchyOf } from '../src/jail/cgroup.js'
import { fixture } from './fixtures.js'

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const hugepagePlugin = fileURLToPath(new URL('./fixtures/hugepage-plugin.mjs', import.meta.url))
const NOBODY = '65534'
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages'

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'cgroups and the jail need root'
  const kvm = Kvm.unavailableReason()
  if (kvm) return kvm
  try {
    jailHelperPath()
  } catch (e) {
    return (e as Error).message
  }
  return undefined
}
const skip = unavailable()
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
