// Connecting the guest to the container's network namespace (network.ts made the plan), as Kata
// Containers' "tcfilter" model does: a TAP made inside the namespace (@vmm/host's Tap.openIn, a
// thread that setns()es there and back), up with the veth's MTU, and on each of the two
// interfaces an ingress qdisc whose u32 match-all filter redirects every frame out of the other
// (tc-mirred(8): "egress redirect"). Frames the veth receives leave through the TAP to the guest;
// frames the guest sends leave through the veth. The veth keeps its address, MAC and routes as
// the caller made them: the only thing added to it is one ingress qdisc, which delete removes.
// A bridge would need the veth's address moved off it, and tc leaves nothing on the host side.
//
// The TAP is not persistent: it lives as long as an fd to it is open (create's, then the
// sandbox's, which inherits it as fd 4), so it and the qdisc on it go with the sandbox, whatever
// ends it. iproute2's tc does the qdiscs and filters (one `tc -batch` inside the namespace)
// rather than rtnetlink messages of our own: the qdisc, u32 selector and mirred action encodings
// are iproute2's to get right, and this runs once per create, next to a guest boot.
import { existsSync } from 'node:fs'
import type { Tap } from '@vmm/host'
import { type NetPlan, type NsRunner, nsRun } from './network.js'

const redirect = (from: string, to: string) => [
  `qdisc add dev ${from} ingress`,
  `filter add dev ${from} parent ffff: protocol all prio 1 u32 match u8 0 0 action mirred egress redirect dev ${to}`,
]

/** The tc commands connect() runs, in order (the veth's side first: no frame arrives for a TAP not yet redirected). */
export function tcCommands(plan: NetPlan): string[] {
  return [...redirect(plan.veth, plan.tap), ...redirect(plan.tap, plan.veth)]
}

/**
 * Makes the TAP in the namespace and redirects traffic both ways. Returns the TAP: its fd goes to
 * the sandbox; closing every copy of it removes the TAP. On failure nothing is left behind.
 */
export async function connectNetwork(plan: NetPlan, run: NsRunner = nsRun): Promise<Tap> {
  // Loaded here, not at the top: most vmm-oci calls never touch the native module.
  const { Tap } = await import('@vmm/host')
  const tap = Tap.openIn(plan.netns, plan.tap, { vnetHdr: true })
  try {
    run(plan.netns, ['ip', 'link', 'set', 'dev', plan.tap, 'mtu', String(plan.mtu), 'up'])
    run(plan.netns, ['tc', '-batch', '-'], `${tcCommands(plan).join('\n')}\n`)
  } catch (e) {
    tap.close()
    undoQuietly(plan, run)
    throw e
  }
  return tap
}

/**
 * Undoes what connect() added to the caller's interface: the veth's ingress qdisc (its filter
 * goes with it). The TAP is gone once the sandbox is. A namespace or veth that is gone already
 * (the CNI plugin tore it down first) has nothing left to undo.
 */
export function disconnectNetwork(plan: NetPlan, run: NsRunner = nsRun): void {
  if (!existsSync(plan.netns)) return
  const links = JSON.parse(run(plan.netns, ['ip', '-j', 'link', 'show'])) as { ifname: string }[]
  if (!links.some((l) => l.ifname === plan.veth)) return
  const qdiscs = JSON.parse(run(plan.netns, ['tc', '-j', 'qdisc', 'show', 'dev', plan.veth])) as {
    kind: string
  }[]
  if (qdiscs.some((q) => q.kind === 'ingress'))
    run(plan.netns, ['tc', 'qdisc', 'del', 'dev', plan.veth, 'ingress'])
}

/** disconnectNetwork for a failed create: the error that failed it is the one to report. */
export function undoQuietly(plan: NetPlan, run: NsRunner = nsRun): void {
  try {
    disconnectNetwork(plan, run)
  } catch {}
}
