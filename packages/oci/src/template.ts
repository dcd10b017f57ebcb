// The fast start (issue 16): a container guest booted once until its agent listens on vsock, then
// paused and snapshotted into the cache as a template; each container restores it instead of
// booting (packages/core's Machine.restore), with overrides that give the clone its own host side:
// the 9p slots rebound to the container's directories, the vsock socket and the console log in
// the container's state directory. This file decides (what the template is, its cache key,
// whether a container can use it, the overrides); template-build.ts boots and saves it.
//
// The template's device set is fixed, since a restored guest keeps the drivers it probed: vsock
// and SLOT_TAGS.length virtio-9p devices, the rootfs and BIND_SLOTS bind-mount directories. At
// the snapshot no slot is mounted, so the 9p devices hold no fid and each may be rebound (the 9p
// device refuses a rebind of a share with fids). Tags are the ones mounts.ts gives: "rootfs", then
// bind1, bind2... in the order the bundle's binds name new directories.
import type { ComponentOverride } from '@vmm/core'
import { DEFAULT_SIZE, type VmSize } from './config.js'
import { type VmPlan, vmManifest } from './machine.js'

/** Bind-mount directories a template serves (Docker's /etc/hosts, hostname, resolv.conf share one). */
export const BIND_SLOTS = 4
export const SLOT_TAGS: readonly string[] = [
  'rootfs',
  ...Array.from({ length: BIND_SLOTS }, (_, i) => `bind${i + 1}`),
]
/** The size a template is booted with: the default container size (a bundle without linux.resources). */
export const TEMPLATE_SIZE: VmSize = DEFAULT_SIZE
/** Bumped when what a template holds changes in a way its key would not see. */
export const TEMPLATE_FORMAT = '1'

/** The container guest's files and their content keys (@vmm/image's ContainerGuest). */
export interface TemplateGuest {
  vmlinux: string
  initramfs: string
  kernelKey: string
  initramfsKey: string
}

/** Where a built template lives: the snapshot, and the empty directory unused slots are bound to. */
export interface Template {
  dir: string
  snapshot: string
  empty: string
}

/** The template's VmPlan; the host paths are the build's own (every restore overrides them). */
export function templatePlan(
  guest: Pick<TemplateGuest, 'vmlinux' | 'initramfs'>,
  paths: { consoleLog: string; vsockPath: string; empty: string },
): VmPlan {
  return {
    size: TEMPLATE_SIZE,
    vmlinux: guest.vmlinux,
    initrd: guest.initramfs,
    consoleLog: paths.consoleLog,
    vsockPath: paths.vsockPath,
    shares: SLOT_TAGS.map((tag) => ({ tag, hostPath: paths.empty, readonly: true })),
  }
}

/**
 * The template's cache key: the kernel and initramfs (which holds the agent) by their content
 * keys, and the machine itself as the manifest it is booted from (size, devices, their slots and
 * the kernel command line), with placeholder paths; the snapshot format's version. Anything else
 * a restore finds wrong (another host CPU, a device state of another VMM version) makes the
 * restore fail, and the sandbox boots cold instead.
 */
export function templateKeyParts(guest: TemplateGuest, snapshotVersion: number): Record<string, string> {
  const manifest = vmManifest(
    templatePlan(
      { vmlinux: 'vmlinux', initramfs: 'initramfs' },
      { consoleLog: 'console', vsockPath: 'vsock', empty: 'empty' },
    ),
  )
  return {
    format: TEMPLATE_FORMAT,
    kernel: guest.kernelKey,
    initramfs: guest.initramfsKey,
    manifest: JSON.stringify(manifest),
    snapshot: String(snapshotVersion),
  }
}

/** The fields of a VmPlan a template can serve; a plan with another one (a network) cannot. */
const SERVED: ReadonlySet<string> = new Set([
  'size',
  'vmlinux',
  'initrd',
  'consoleLog',
  'vsockPath',
  'shares',
])

const sizeText = (s: VmSize) => `${s.vcpus} vCPU${s.vcpus === 1 ? '' : 's'}, ${s.memoryMiB} MiB`

/**
 * Why container `plan` cannot start from a template (a cold boot serves it), or undefined when it
 * can. `guest` is the container guest the plan boots (the template is made from it).
 */
export function whyNotTemplate(
  plan: VmPlan,
  guest: Pick<TemplateGuest, 'vmlinux' | 'initramfs'>,
): string | undefined {
  const extra = Object.entries(plan).filter(([k, v]) => !SERVED.has(k) && v !== undefined && v !== null)
  if (extra.length > 0)
    return `the container needs ${extra.map(([k]) => k).join(', ')}, which the template's fixed device set has not`
  if (plan.size.vcpus !== TEMPLATE_SIZE.vcpus || plan.size.memoryMiB !== TEMPLATE_SIZE.memoryMiB)
    return `the bundle's linux.resources ask for ${sizeText(plan.size)}; the template is ${sizeText(TEMPLATE_SIZE)}`
  if (plan.initrd !== guest.initramfs || plan.vmlinux !== guest.vmlinux)
    return 'the container boots another kernel or initramfs than the container guest (the rootfs copied into the initrd: no virtio-9p)'
  if (plan.shares.length > SLOT_TAGS.length)
    return `${plan.shares.length} shared directories (the rootfs and ${plan.shares.length - 1} bind-mount directories); the template has ${SLOT_TAGS.length} slots (the rootfs and ${BIND_SLOTS})`
  const stray = plan.shares.find((s) => !SLOT_TAGS.includes(s.tag))
  if (stray)
    return `shared directory tag ${stray.tag} is not one of the template's slots (${SLOT_TAGS.join(', ')})`
  return undefined
}

/**
 * A container's overrides of the template's manifest (`<component>.<prop>=<value>`, as
 * `vmm restore --set` takes them): the console log and vsock socket in its state directory, each
 * used slot bound to its directory (read-only as the bundle says), each unused one to the
 * template's empty directory, read-only (the guest never mounts it).
 */
export function templateOverrides(plan: VmPlan, empty: string): ComponentOverride[] {
  const o = (component: string, property: string, value: unknown): ComponentOverride => ({
    component,
    property,
    value,
  })
  const overrides = [o('serial', 'path', plan.consoleLog), o('vsock', 'path', plan.vsockPath)]
  for (const tag of SLOT_TAGS) {
    const share = plan.shares.find((s) => s.tag === tag)
    overrides.push(
      o(`fs-${tag}`, 'path', share?.hostPath ?? empty),
      o(`fs-${tag}`, 'readonly', share?.readonly ?? true),
    )
  }
  return overrides
}
