// The container network's host side on real namespaces, without a VM: two network namespaces
// this test makes, joined by a veth pair (the container's side with its address and default
// route, as a CNI plugin leaves it; the peer's side with the gateway's), then discovery, the TAP
// made inside the container's namespace and tc's redirects both ways, checked with ARP frames
// through the TAP fd (the fd the sandbox's virtio-net device would read and write): the peer's
// ARP request arrives on the TAP, and a request written into the TAP reaches the peer, whose
// reply comes back on the TAP. After disconnect the TAP and qdisc are gone and the veth works for
// the namespace's own stack again. Needs root (ip netns, setns); skips with the reason otherwise.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { discoverNetwork, type NetPlan } from '../src/network.js'
import { connectNetwork, disconnectNetwork } from '../src/network-link.js'

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, setns)'
  const probe = spawnSync('ip', ['netns', 'list'], { stdio: 'pipe' })
  if (probe.status !== 0) return `ip netns is unavailable: ${probe.stderr?.toString().trim()}`
  if (spawnSync('busybox', ['true']).status !== 0) return 'busybox is not installed (for ping)'
  return undefined
}
const reason = unavailable()
if (reason) console.warn(`[network link test skipped] ${reason}`)

const tag = randomBytes(3).toString('hex')
const ns = { c: `vmm-oci-c-${tag}`, p: `vmm-oci-p-${tag}` }
const path = (name: string) => `/run/netns/${name}`
const inNs = (name: string, ...argv: string[]) =>
  execFileSync('ip', ['netns', 'exec', name, ...argv], { encoding: 'utf8', stdio: 'pipe' })
const C_IP = '10.99.7.2'
const P_IP = '10.99.7.1'

/** The next frame the TAP gives within `ms` that `pick` accepts (after the 12-byte virtio_net_hdr). */
async function nextFrame(tap: { read(v: Uint8Array): number }, pick: (f: Buffer) => boolean, ms = 5000) {
  const buf = new Uint8Array(2048)
  for (const end = Date.now() + ms; Date.now() < end; ) {
    const n = tap.read(buf)
    if (n < 0) {
      await new Promise((r) => setTimeout(r, 10))
      continue
    }
    const frame = Buffer.from(buf.subarray(12, n))
    if (pick(frame)) return frame
  }
  return undefined
}
const ipOf = (b: Buffer, at: number) => [...b.subarray(at, at + 4)].join('.')
/** An ARP frame (RFC 826 over Ethernet): op 1 request, 2 reply; ARP payload at offset 14. */
const isArp = (op: number, senderIp: string) => (f: Buffer) =>
  f.readUInt16BE(12) === 0x0806 && f.readUInt16BE(20) === op && ipOf(f, 28) === senderIp

describe.skipIf(reason !== undefined)('the container network on real namespaces', () => {
  let mac: string
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns.c])
    execFileSync('ip', ['netns', 'add', ns.p])
    execFileSync('ip', [
      'link',
      'add',
      `vc${tag}`,
      'netns',
      ns.c,
      'type',
      'veth',
      'peer',
      'vp',
      'netns',
      ns.p,
    ])
    inNs(ns.c, 'ip', 'link', 'set', `vc${tag}`, 'name', 'eth0')
    for (const [n, dev, ip] of [
      [ns.c, 'eth0', C_IP],
      [ns.p, 'vp', P_IP],
    ] as const) {
      inNs(n, 'ip', 'addr', 'add', `${ip}/24`, 'dev', dev)
      inNs(n, 'ip', 'link', 'set', dev, 'up')
      inNs(n, 'ip', 'link', 'set', 'lo', 'up')
    }
    inNs(ns.c, 'ip', 'route', 'add', 'default', 'via', P_IP)
    mac = JSON.parse(inNs(ns.c, 'ip', '-j', 'link', 'show', 'eth0'))[0].address
  })
  afterAll(() => {
    for (const n of Object.values(ns)) spawnSync('ip', ['netns', 'del', n])
  })

  it('discovers the veth, redirects both ways through the TAP, and leaves the veth as it was', async () => {
    const plan = discoverNetwork(path(ns.c)) as NetPlan
    expect(plan).toEqual({
      netns: path(ns.c),
      veth: 'eth0',
      mac,
      mtu: 1500,
      addresses: [{ address: C_IP, prefix: 24 }],
      routes: [{ dest: '0.0.0.0', prefix: 0, gateway: P_IP }],
      tap: 'vmmtap0',
    })
    const tap = await connectNetwork(plan)
    try {
      expect(tap.name).toBe('vmmtap0')
      expect(JSON.parse(inNs(ns.c, 'ip', '-j', 'link', 'show', 'vmmtap0'))[0].mtu).toBe(1500)
      // Not in this (the test's) namespace: the TAP was made in the container's only.
      expect(spawnSync('ip', ['link', 'show', 'vmmtap0'], { stdio: 'pipe' }).status).not.toBe(0)
      // A second container joining the same namespace is refused, naming what is there.
      expect(() => discoverNetwork(path(ns.c))).toThrow(/has a vmmtap0 already: another container joined it/)

      // Peer -> container: the peer's ARP request for the container's address arrives on the TAP.
      const ping = spawnSync('ip', ['netns', 'exec', ns.p, 'busybox', 'ping', '-c', '1', '-W', '1', C_IP])
      expect(ping.status).not.toBe(0) // nobody answers: the veth's own stack no longer sees its frames
      const request = await nextFrame(tap, isArp(1, P_IP))
      expect(request && ipOf(request, 38)).toBe(C_IP)

      // Container -> peer: an ARP request from the veth's MAC, written into the TAP, leaves
      // through the veth; the peer's reply to that MAC comes back through the TAP.
      const m = Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)))
      const ip = (s: string) => Buffer.from(s.split('.').map(Number))
      const arp = Buffer.concat([
        Buffer.alloc(6, 0xff),
        m,
        Buffer.from([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]),
        m,
        ip(C_IP),
        Buffer.alloc(6),
        ip(P_IP),
        Buffer.alloc(18),
      ])
      expect(tap.write([new Uint8Array(12), arp])).toBe(12 + arp.length)
      const reply = await nextFrame(tap, isArp(2, P_IP))
      expect(reply?.subarray(0, 6).equals(m)).toBe(true)
    } finally {
      tap.close()
      disconnectNetwork(plan)
    }
    expect(
      spawnSync('ip', ['netns', 'exec', ns.c, 'ip', 'link', 'show', 'vmmtap0'], { stdio: 'pipe' }).status,
    ).not.toBe(0)
    expect(
      JSON.parse(inNs(ns.c, 'tc', '-j', 'qdisc', 'show', 'dev', 'eth0')).map((q: { kind: string }) => q.kind),
    ).not.toContain('ingress')
    // The veth is the caller's again: the namespace's own stack reaches the peer through it.
    inNs(ns.c, 'busybox', 'ping', '-c', '1', '-W', '5', P_IP)
    // Undoing twice (delete after a failed create) finds nothing to undo.
    disconnectNetwork(plan)
  })
})
