// The container network's pure pieces: which namespace a bundle joins, the plan made from what
// iproute2 reports of it (the shapes `ip -j` and `tc -j` print, as a CNI plugin leaves a pod's
// namespace), what is refused and how it is worded, the tc commands, the agent's records, the
// micro board's net device, and the init's PID namespace record.
import { describe, expect, it } from 'vitest'
import type { Spec } from '../src/config.js'
import { vmManifest } from '../src/machine.js'
import {
  discoverNetwork,
  type IpLink,
  type IpRoute,
  netRecords,
  networkNamespace,
  planFromIp,
  SANDBOX_TAP_FD,
} from '../src/network.js'
import { tcCommands } from '../src/network-link.js'
import { newPidNamespace, processRecords } from '../src/procspec.js'

const NS = '/var/run/netns/cni-1234'
const lo: IpLink = {
  ifname: 'lo',
  link_type: 'loopback',
  address: '00:00:00:00:00:00',
  mtu: 65536,
  addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
}
const eth0: IpLink = {
  ifname: 'eth0',
  link_type: 'ether',
  address: '0A:58:0A:F4:01:07',
  mtu: 1450,
  addr_info: [
    { family: 'inet', local: '10.244.1.7', prefixlen: 24, scope: 'global' },
    { family: 'inet6', local: 'fe80::858:aff:fef4:107', prefixlen: 64, scope: 'link' },
  ],
}
// The fallback tunnel devices the kernel puts in every namespace once ipip/sit are loaded.
const tunl0: IpLink = { ifname: 'tunl0', link_type: 'ipip', address: '0.0.0.0', mtu: 1480, addr_info: [] }
const sit0: IpLink = { ifname: 'sit0', link_type: 'sit', address: '0.0.0.0', mtu: 1480, addr_info: [] }
const routes: IpRoute[] = [
  { dst: 'default', gateway: '169.254.1.1', dev: 'eth0' },
  { dst: '10.244.1.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link' },
  { dst: '169.254.1.1', dev: 'eth0', scope: 'link' },
]
const spec = (linux: Spec['linux'], annotations?: Record<string, string>): Spec => ({
  ociVersion: '1.0.2',
  root: { path: '/r' },
  process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } },
  linux,
  ...(annotations ? { annotations } : {}),
})

describe('the network namespace a bundle joins', () => {
  it('is the path of its network entry; none without a path, an entry, or for a pod sandbox', () => {
    expect(networkNamespace(spec({ namespaces: [{ type: 'pid' }, { type: 'network', path: NS }] }))).toBe(NS)
    expect(networkNamespace(spec({ namespaces: [{ type: 'network' }] }))).toBeUndefined()
    expect(networkNamespace(spec({ namespaces: [{ type: 'pid' }] }))).toBeUndefined()
    expect(networkNamespace(spec(undefined))).toBeUndefined()
    const pause = spec(
      { namespaces: [{ type: 'network', path: NS }] },
      { 'io.kubernetes.cri.container-type': 'sandbox' },
    )
    expect(networkNamespace(pause)).toBeUndefined()
  })
})

describe('the plan from what the namespace holds', () => {
  it('takes the one Ethernet interface: MAC, MTU, IPv4 addresses; routes on the link first, no kernel routes', () => {
    expect(planFromIp(NS, [lo, eth0, tunl0, sit0], routes, [{ kind: 'noqueue' }])).toEqual({
      netns: NS,
      veth: 'eth0',
      mac: '0a:58:0a:f4:01:07',
      mtu: 1450,
      addresses: [{ address: '10.244.1.7', prefix: 24 }],
      routes: [
        { dest: '169.254.1.1', prefix: 32 },
        { dest: '0.0.0.0', prefix: 0, gateway: '169.254.1.1' },
      ],
      tap: 'vmmtap0',
    })
  })

  it('takes IPv6 addresses and routes too, but not link-local ones, kernel routes or those from router advertisements', () => {
    const dual: IpLink = {
      ...eth0,
      addr_info: [
        ...eth0.addr_info!,
        { family: 'inet6', local: 'fd00:10:244:1::7', prefixlen: 64, scope: 'global' },
      ],
    }
    const routes6: IpRoute[] = [
      { dst: 'fd00:10:244:1::/64', dev: 'eth0', protocol: 'kernel' },
      { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel' },
      { dst: 'default', gateway: 'fe80::1', dev: 'eth0', protocol: 'ra' },
      { dst: 'default', gateway: 'fd00:10:244:1::1', dev: 'eth0' },
      { dst: 'fd00:ffff::1', dev: 'eth0' },
    ]
    const plan = planFromIp(NS, [lo, dual], routes, [], routes6)!
    expect(plan.addresses).toEqual([
      { address: '10.244.1.7', prefix: 24 },
      { address: 'fd00:10:244:1::7', prefix: 64 },
    ])
    expect(plan.routes).toEqual([
      { dest: '169.254.1.1', prefix: 32 },
      { dest: 'fd00:ffff::1', prefix: 128 },
      { dest: '0.0.0.0', prefix: 0, gateway: '169.254.1.1' },
      { dest: '::', prefix: 0, gateway: 'fd00:10:244:1::1' },
    ])
    expect(netRecords(plan).slice(2)).toEqual([
      ['i', 'fd00:10:244:1::7/64'],
      ['r', '169.254.1.1/32 -'],
      ['r', 'fd00:ffff::1/128 -'],
      ['r', '0.0.0.0/0 169.254.1.1'],
      ['r', '::/0 fd00:10:244:1::1'],
    ])
  })

  it('is none (loopback only) for a namespace with no Ethernet interface', () => {
    expect(planFromIp(NS, [lo, tunl0], [])).toBeUndefined()
  })

  it.each([
    [
      'several interfaces',
      [lo, eth0, { ...eth0, ifname: 'net1' }],
      routes,
      [],
      `network namespace ${NS} has 2 interfaces (eth0, net1): the microVM is connected to one only`,
    ],
    [
      'no IP address',
      [lo, { ...eth0, addr_info: [] }],
      [],
      [],
      `network namespace ${NS}: eth0 has no IP address to give the guest`,
    ],
    [
      'an ingress qdisc there already',
      [lo, eth0],
      routes,
      [{ kind: 'noqueue' }, { kind: 'ingress' }],
      `network namespace ${NS}: eth0 has an ingress qdisc already`,
    ],
    [
      'our TAP there already',
      [lo, eth0, { ifname: 'vmmtap0', link_type: 'ether', address: '12:34:56:78:9a:bc' }],
      routes,
      [],
      `network namespace ${NS} has a vmmtap0 already: another container joined it`,
    ],
    [
      'a blackhole route',
      [lo, eth0],
      [...routes, { dst: '10.0.0.0/8', dev: 'eth0', type: 'blackhole' }],
      [],
      `network namespace ${NS}: a blackhole route to 10.0.0.0/8 cannot be given to the guest`,
    ],
  ] as const)('refuses %s, naming it', (_what, links, r, qdiscs, message) => {
    expect(() => planFromIp(NS, links as IpLink[], r as IpRoute[], qdiscs)).toThrow(message)
  })

  it('reads the namespace with ip and tc inside it, and nothing else', () => {
    const calls: string[] = []
    const plan = discoverNetwork(NS, (netns, argv) => {
      calls.push(`${netns}: ${argv.join(' ')}`)
      if (argv[0] === 'tc') return '[{"kind":"noqueue","handle":"0:","root":true}]'
      if (argv.includes('-6')) return '[]'
      return JSON.stringify(argv.includes('addr') ? [lo, eth0] : routes)
    })
    expect(plan?.veth).toBe('eth0')
    expect(calls).toEqual([
      `${NS}: ip -j addr show`,
      `${NS}: ip -j -4 route show table main`,
      `${NS}: ip -j -6 route show table main`,
      `${NS}: tc -j qdisc show dev eth0`,
    ])
  })
})

describe('what the plan becomes', () => {
  const plan = planFromIp(NS, [lo, eth0], routes)!

  it('tc: an ingress qdisc on each side and a match-all redirect to the other, the veth first', () => {
    expect(tcCommands(plan)).toEqual([
      'qdisc add dev eth0 ingress',
      'filter add dev eth0 parent ffff: protocol all prio 1 u32 match u8 0 0 action mirred egress redirect dev vmmtap0',
      'qdisc add dev vmmtap0 ingress',
      'filter add dev vmmtap0 parent ffff: protocol all prio 1 u32 match u8 0 0 action mirred egress redirect dev eth0',
    ])
  })

  it("the agent's records: the interface, each address, each route in order", () => {
    expect(netRecords(plan)).toEqual([
      ['n', 'eth0 0a:58:0a:f4:01:07 1450'],
      ['i', '10.244.1.7/24'],
      ['r', '169.254.1.1/32 -'],
      ['r', '0.0.0.0/0 169.254.1.1'],
    ])
  })

  it('the micro board: a virtio-net device on the inherited TAP fd with the veth MAC, in a slot of its own', () => {
    const manifest = vmManifest({
      size: { vcpus: 1, memoryMiB: 256 },
      vmlinux: '/k',
      initrd: '/i',
      consoleLog: '/c',
      vsockPath: '/v',
      shares: [{ tag: 'rootfs', hostPath: '/r', readonly: false }],
      net: { tap: plan.tap, fd: SANDBOX_TAP_FD, mac: plan.mac },
    }) as { components: Record<string, Record<string, unknown>> }
    expect(manifest.components.net).toMatchObject({
      type: 'virtio-net',
      tap: 'vmmtap0',
      fd: 4,
      mac: plan.mac,
    })
    const slots = Object.values(manifest.components)
      .map((c) => (c.resources as { regs?: number } | undefined)?.regs)
      .filter((r) => r !== undefined)
    expect(new Set(slots).size).toBe(slots.length)
    // Without a network there is no net device (the loopback-only guest).
    const none = vmManifest({
      size: { vcpus: 1, memoryMiB: 256 },
      vmlinux: '/k',
      initrd: '/i',
      consoleLog: '/c',
      vsockPath: '/v',
      shares: [],
    }) as {
      components: Record<string, unknown>
    }
    expect(none.components.net).toBeUndefined()
  })
})

describe("the init's PID namespace", () => {
  it('is new when the bundle asks for a new pid namespace; the P record is the init only', () => {
    expect(newPidNamespace(spec({ namespaces: [{ type: 'pid' }, { type: 'network' }] }))).toBe(true)
    expect(newPidNamespace(spec({ namespaces: [{ type: 'network' }] }))).toBe(false)
    expect(newPidNamespace(spec(undefined))).toBe(false)
    const p = { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } }
    expect(processRecords(p, true, true).slice(-2)).toEqual([
      ['w', '1'],
      ['P', '1'],
    ])
    expect(processRecords(p, false).some(([k]) => k === 'P')).toBe(false)
  })
})
