// Which hierarchy each cgroup limit goes to (cgroup.ts), read from mountinfo texts of the three
// kinds of host (unit tier: no root, nothing written): v1 only, hybrid (ours), v2 only.
import { describe, expect, it } from 'vitest'
import { parseCgroupSetting, parseRlimits } from '../src/jail/args.js'
import { cgroupHierarchies, hierarchyOf } from '../src/jail/cgroup.js'

// The lines of this host's /proc/self/mountinfo (2026-12-04), and a v2-only host's.
const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n')
const COMBINED_V1 = '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct'
const SPACED = '50 31 0:40 /sub /mnt/my\\040cgroups rw - cgroup cgroup rw,hugetlb'

describe('cgroup hierarchies', () => {
  it('v1 mounts name their controllers; the name= hierarchy has none; octal escapes are undone', () => {
    const h = cgroupHierarchies(`${HYBRID}\n${COMBINED_V1}\n${SPACED}`)
    expect(h.filter((x) => x.version === 1).map((x) => [x.mount, x.controllers])).toEqual([
      ['/sys/fs/cgroup/cpu', ['cpu']],
      ['/sys/fs/cgroup/memory', ['memory']],
      ['/sys/fs/cgroup/pids', ['pids']],
      ['/sys/fs/cgroup/systemd', []],
      ['/sys/fs/cgroup/cpu,cpuacct', ['cpu', 'cpuacct']],
      ['/mnt/my cgroups', ['hugetlb']],
    ])
    expect(h.find((x) => x.mount === '/mnt/my cgroups')?.root).toBe('/sub')
  })

  it('a controller bound to v1 goes there; one only v2 lists goes to v2; one nowhere is undefined', () => {
    const h = cgroupHierarchies(HYBRID)
    // The v2 mount's cgroup.controllers is read from the host; pin it as ours: hugetlb only.
    const hs = h.map((x) => (x.version === 2 ? { ...x, controllers: ['hugetlb'] } : x))
    expect(hierarchyOf('memory', hs)).toMatchObject({ version: 1, mount: '/sys/fs/cgroup/memory' })
    expect(hierarchyOf('hugetlb', hs)).toMatchObject({ version: 2, mount: '/sys/fs/cgroup/unified' })
    expect(hierarchyOf('io', hs)).toBeUndefined()
    const v2only = [
      { version: 2 as const, mount: '/sys/fs/cgroup', root: '/', controllers: ['memory', 'pids'] },
    ]
    expect(hierarchyOf('memory', v2only)).toMatchObject({ version: 2 })
  })
})

describe('cgroup and rlimit settings', () => {
  it('hugetlb files name their page size; the option is named in errors', () => {
    expect(parseCgroupSetting('hugetlb.2MB.max=4MiB')).toEqual({ file: 'hugetlb.2MB.max', value: '4MiB' })
    expect(parseCgroupSetting('pids.max=64', '--jail-cgroup')).toEqual({
      file: 'pids.max',
      value: '64',
      option: '--jail-cgroup',
    })
    expect(() => parseCgroupSetting('hugetlb.2MB.max=lots')).toThrow(
      '--cgroup hugetlb.2MB.max=lots: not a size',
    )
    expect(parseCgroupSetting('memory.max=max')).toEqual({ file: 'memory.max', value: 'max' })
    expect(() => parseCgroupSetting('memory', '--jail-cgroup')).toThrow(
      '--jail-cgroup "memory": expected <controller>.<file>=<value>',
    )
  })

  it('rlimits: soft above hard is refused (setrlimit(2) EINVAL), before anything is made', () => {
    expect(parseRlimits(['nofile=100:200', 'core=0'])).toEqual([
      { name: 'nofile', soft: '100', hard: '200' },
      { name: 'core', soft: '0', hard: '0' },
    ])
    expect(parseRlimits(['fsize=1:unlimited'])).toContainEqual({
      name: 'fsize',
      soft: '1',
      hard: 'unlimited',
    })
    expect(() => parseRlimits(['nofile=300:200'], '--jail-rlimit')).toThrow(
      '--jail-rlimit "nofile=300:200": the soft limit 300 is above the hard limit 200',
    )
    expect(() => parseRlimits(['nofile=unlimited:200'])).toThrow('above the hard limit')
    expect(() => parseRlimits(['bogus=1'])).toThrow('--rlimit "bogus=1": expected <name>=<n>[:<hard>]')
  })
})
