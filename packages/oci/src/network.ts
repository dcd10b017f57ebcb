// The container's network, when the bundle joins a network namespace by path (runtime-spec
// config-linux.md "Namespaces": "If a path is specified, the runtime MUST place the container
// process in the namespace at that path"; without a path a new namespace is made, which for a
// microVM is the guest's own, loopback-only network). A VM cannot be placed in a host namespace,
// so the guest is connected to it the way Kata Containers does: the namespace's interface (the
// veth a CNI plugin or `ip` put there, with the container's address) keeps its address and MAC,
// a TAP made inside the namespace carries the guest's frames, tc redirects everything between the
// two (network-link.ts), and the guest's virtio-net interface takes the veth's MAC, addresses,
// routes and MTU (the agent's 'n'/'i'/'r' records, agent/net.c). What cannot be carried over is
// refused by name: several interfaces, an interface without an IP address, a route that is not
// unicast, a namespace that another container already joined.
//
// Discovery reads the namespace with iproute2's JSON output (`ip -j`, `tc -j`) run inside it by
// nsenter(1): the same answers the kernel's rtnetlink dump gives, without a netlink parser here.
import { execFileSync } from 'node:child_process'
import { isIPv4, isIPv6 } from 'node:net'
import type { Spec } from './config.js'
import { OciError } from './errors.js'
import type { Records } from './protocol.js'

/** The TAP's name inside the namespace (one networked container per namespace: see planFromIp). */
export const TAP_NAME = 'vmmtap0'
/** The sandbox's fd for the TAP: startHelper hands extra fds over from 4 on (0-2 stdio, 3 status). */
export const SANDBOX_TAP_FD = 4
/** CRI's annotation of a pod's own (pause) container, which holds the pod's namespaces. */
const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type'

export interface NetAddress {
  address: string
  prefix: number
}
export interface NetRoute {
  /** IPv4 or IPv6; 0.0.0.0 (::) with prefix 0 for the default route. */
  dest: string
  prefix: number
  /** Absent for a route on the link (a CNI plugin's /32 route to its gateway). */
  gateway?: string
}

/** What create connects and the agent configures; kept in sandbox.json so delete can undo it. */
export interface NetPlan {
  /** The namespace path, as the bundle names it. */
  netns: string
  /** The namespace's interface: its name (the guest's interface takes it too), MAC and MTU. */
  veth: string
  mac: string
  mtu: number
  addresses: NetAddress[]
  /** In the order the guest must add them: routes on the link before routes through a gateway. */
  routes: NetRoute[]
  tap: string
}

/** `ip -j addr show`'s objects, the fields used here. */
export interface IpLink {
  ifname: string
  link_type?: string
  address?: string
  mtu?: number
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[]
}
/** `ip -j -4|-6 route show table main`'s objects. */
export interface IpRoute {
  dst: string
  gateway?: string
  dev?: string
  protocol?: string
  scope?: string
  type?: string
}
/** `tc -j qdisc show dev X`'s objects. */
export interface TcQdisc {
  kind: string
}

/** Runs argv inside the network namespace `netns` (with `input` on its stdin) and returns its stdout. */
export type NsRunner = (netns: string, argv: readonly string[], input?: string) => string

export const nsRun: NsRunner = (netns, argv, input) => {
  try {
    return execFileSync('nsenter', [`--net=${netns}`, ...argv], {
      encoding: 'utf8',
      stdio: 'pipe',
      ...(input === undefined ? {} : { input }),
    })
  } catch (e) {
    const err = e as { stderr?: string; message: string }
    const why = (err.stderr || err.message).trim().split('\n').pop()
    throw new OciError(`network namespace ${netns}: ${argv.join(' ')}: ${why}`)
  }
}

/**
 * The path of the network namespace the container joins, or undefined for a guest with loopback
 * only: no network entry (the runtime's own namespace, which for the guest is its own), an entry
 * without a path (a new namespace), or a Kubernetes pod's pause container, which only holds the
 * pod's namespace for the containers that join it (the first of them takes the pod's network).
 */
export function networkNamespace(spec: Spec): string | undefined {
  if (spec.annotations?.[CRI_CONTAINER_TYPE] === 'sandbox') return undefined
  return spec.linux?.namespaces?.find((ns) => ns.type === 'network')?.path
}

function routeOf(r: IpRoute, v6: boolean, where: string): NetRoute {
  if (r.type && r.type !== 'unicast')
    throw new OciError(
      `${where}: a ${r.type} route to ${r.dst} cannot be given to the guest (unicast routes only)`,
    )
  const ok = v6 ? isIPv6 : isIPv4
  const bits = v6 ? 128 : 32
  const [dest = '', len] = r.dst === 'default' ? [v6 ? '::' : '0.0.0.0', '0'] : r.dst.split('/')
  const prefix = len === undefined ? bits : Number(len)
  if (!ok(dest) || !(Number.isInteger(prefix) && prefix >= 0 && prefix <= bits))
    throw new OciError(`${where}: cannot read the route to ${r.dst}`)
  if (r.gateway !== undefined && !ok(r.gateway))
    throw new OciError(`${where}: cannot read the gateway ${r.gateway} of the route to ${r.dst}`)
  return { dest, prefix, ...(r.gateway ? { gateway: r.gateway } : {}) }
}

/**
 * The plan from what the namespace holds: one Ethernet interface besides lo (tunnel devices such
 * as tunl0 and sit0, which the kernel adds to every namespace, are not ones), its IPv4 and IPv6
 * addresses (not link-local), and its routes of both families but the kernel's own and those
 * from router advertisements.
 * Undefined when the namespace has no such interface: the guest then has loopback only, as the
 * container would under runc. `qdiscs` are the interface's: an ingress (or clsact) qdisc means
 * someone redirects its traffic already (another container, the caller's own tc rules).
 */
export function planFromIp(
  netns: string,
  links: readonly IpLink[],
  routes: readonly IpRoute[],
  qdiscs: readonly TcQdisc[] = [],
  routes6: readonly IpRoute[] = [],
): NetPlan | undefined {
  const where = `network namespace ${netns}`
  if (links.some((l) => l.ifname === TAP_NAME))
    throw new OciError(
      `${where} has a ${TAP_NAME} already: another container joined it; not connecting a second one`,
    )
  const ether = links.filter((l) => l.ifname !== 'lo' && l.link_type === 'ether')
  if (ether.length === 0) return undefined
  if (ether.length > 1)
    throw new OciError(
      `${where} has ${ether.length} interfaces (${ether.map((l) => l.ifname).join(', ')}): the microVM is connected to one only`,
    )
  const veth = ether[0]!
  // Link-local IPv6 addresses are not carried over: the guest makes the same from the same MAC.
  const inet = (veth.addr_info ?? []).filter(
    (a) => a.family === 'inet' || (a.family === 'inet6' && a.scope !== 'link' && a.scope !== 'host'),
  )
  if (inet.length === 0) throw new OciError(`${where}: ${veth.ifname} has no IP address to give the guest`)
  if (!veth.address || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(veth.address))
    throw new OciError(`${where}: ${veth.ifname} has no Ethernet address`)
  const taken = qdiscs.find((q) => q.kind === 'ingress' || q.kind === 'clsact')
  if (taken)
    throw new OciError(
      `${where}: ${veth.ifname} has an ${taken.kind} qdisc already (another container joined this namespace, or tc rules of its own): not connecting a second one`,
    )
  // The kernel's own routes (an address's prefix, fe80::/64) the guest's kernel makes too, and
  // routes learnt from router advertisements it learns itself: the frames reach it.
  const theirs = (r: IpRoute) => r.dev === veth.ifname && r.protocol !== 'kernel' && r.protocol !== 'ra'
  const own = [
    ...routes.filter(theirs).map((r) => routeOf(r, false, where)),
    ...routes6.filter(theirs).map((r) => routeOf(r, true, where)),
  ]
  return {
    netns,
    veth: veth.ifname,
    mac: veth.address.toLowerCase(),
    mtu: veth.mtu ?? 1500,
    addresses: inet.map((a) => ({ address: a.local, prefix: a.prefixlen })),
    routes: [...own.filter((r) => !r.gateway), ...own.filter((r) => r.gateway)],
    tap: TAP_NAME,
  }
}

function json<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T
  } catch {
    throw new OciError(`${what}: not the JSON iproute2 gives (${text.slice(0, 80)})`)
  }
}

/** Reads the namespace (read-only: nothing is made) and plans the connection; see planFromIp. */
export function discoverNetwork(netns: string, run: NsRunner = nsRun): NetPlan | undefined {
  const links = json<IpLink[]>(run(netns, ['ip', '-j', 'addr', 'show']), 'ip addr')
  const routes = json<IpRoute[]>(run(netns, ['ip', '-j', '-4', 'route', 'show', 'table', 'main']), 'ip route')
  const routes6 = json<IpRoute[]>(
    run(netns, ['ip', '-j', '-6', 'route', 'show', 'table', 'main']),
    'ip route',
  )
  const veth = links.find((l) => l.ifname !== 'lo' && l.link_type === 'ether')
  const qdiscs = veth
    ? json<TcQdisc[]>(run(netns, ['tc', '-j', 'qdisc', 'show', 'dev', veth.ifname]), 'tc qdisc')
    : []
  return planFromIp(netns, links, routes, qdiscs, routes6)
}

/** The plan for the bundle's network, checked before create makes anything; undefined: loopback only. */
export function planNetwork(spec: Spec, run: NsRunner = nsRun): NetPlan | undefined {
  const netns = networkNamespace(spec)
  return netns === undefined ? undefined : discoverNetwork(netns, run)
}

/**
 * The agent's records in the setup message 'C' (agent/net.c): 'n' "NAME MAC MTU" for the
 * interface whose MAC it is, then 'i' "ADDRESS/PREFIX" for each address and 'r' "DEST/PREFIX
 * GATEWAY" ("-": on the link) for each route, in order.
 */
export function netRecords(plan: NetPlan): Records {
  return [
    ['n', `${plan.veth} ${plan.mac} ${plan.mtu}`],
    ...plan.addresses.map((a): [string, string] => ['i', `${a.address}/${a.prefix}`]),
    ...plan.routes.map((r): [string, string] => ['r', `${r.dest}/${r.prefix} ${r.gateway ?? '-'}`]),
  ]
}
