// The container template's pure parts (template.ts): its cache key, which containers it serves
// (and why the others boot cold), the overrides a clone is restored with, and the boot message.
// Building and restoring it on /dev/kvm is test/e2e/docker.test.ts's.
import { applyOverrides } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { type Spec, vmSize } from '../src/config.js'
import { type VmPlan, vmManifest } from '../src/machine.js'
import { guestMounts } from '../src/mounts.js'
import { bootPayload } from '../src/protocol.js'
import {
  SLOT_TAGS,
  TEMPLATE_SIZE,
  type TemplateGuest,
  templateKeyParts,
  templateOverrides,
  templatePlan,
  whyNotTemplate,
} from '../src/template.js'

const guest: TemplateGuest = {
  vmlinux: '/cache/vmlinux',
  initramfs: '/cache/initramfs.cpio.gz',
  kernelKey: 'k1',
  initramfsKey: 'i1',
}

const spec = (extra: Partial<Spec> = {}): Spec =>
  ({
    ociVersion: '1.0.2',
    process: { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: '/tmp' },
    ...extra,
  }) as Spec

function plan(s: Spec, more: Partial<VmPlan> = {}): VmPlan {
  return {
    size: vmSize(s.linux?.resources),
    vmlinux: guest.vmlinux,
    initrd: guest.initramfs,
    consoleLog: '/run/c1/console.log',
    vsockPath: '/tmp/vmm-oci-1/vsock.sock',
    shares: guestMounts(s, true).shares,
    ...more,
  }
}

describe('container template', () => {
  it('is keyed by the kernel, the initramfs (the agent), the machine and the snapshot format', () => {
    const base = JSON.stringify(templateKeyParts(guest, 1))
    expect(JSON.stringify(templateKeyParts({ ...guest }, 1))).toBe(base)
    // The files' paths do not matter, their content keys do.
    expect(JSON.stringify(templateKeyParts({ ...guest, vmlinux: '/elsewhere' }, 1))).toBe(base)
    for (const other of [
      { ...guest, kernelKey: 'k2' },
      { ...guest, initramfsKey: 'i2' },
    ])
      expect(JSON.stringify(templateKeyParts(other, 1))).not.toBe(base)
    expect(JSON.stringify(templateKeyParts(guest, 2))).not.toBe(base)
    // The machine: its size and every slot are in the manifest part.
    const manifest = JSON.parse(templateKeyParts(guest, 1).manifest!) as {
      machine: { memory: string; vcpus: number }
      components: Record<string, { type: string }>
    }
    expect(manifest.machine).toMatchObject({
      memory: `${TEMPLATE_SIZE.memoryMiB}MiB`,
      vcpus: TEMPLATE_SIZE.vcpus,
    })
    expect(Object.keys(manifest.components).filter((c) => c.startsWith('fs-'))).toEqual(
      SLOT_TAGS.map((t) => `fs-${t}`),
    )
  })

  it('serves the default size with a rootfs and up to four bind directories', () => {
    expect(whyNotTemplate(plan(spec()), guest)).toBeUndefined()
    const binds = (n: number) =>
      ['/usr', '/etc', '/var', '/opt', '/srv']
        .slice(0, n)
        .map((source, i) => ({ destination: `/m${i}`, type: 'bind', source, options: ['rbind'] }))
    expect(whyNotTemplate(plan(spec({ mounts: binds(4) })), guest)).toBeUndefined()
    expect(whyNotTemplate(plan(spec({ mounts: binds(5) })), guest)).toBe(
      '6 shared directories (the rootfs and 5 bind-mount directories); the template has 5 slots (the rootfs and 4)',
    )
  })

  it('sends other sizes, other guests and extra devices to a cold boot, saying why', () => {
    const big = spec({
      linux: { resources: { memory: { limit: 512 * 2 ** 20 }, cpu: { quota: 200000, period: 100000 } } },
    })
    expect(whyNotTemplate(plan(big), guest)).toBe(
      "the bundle's linux.resources ask for 2 vCPUs, 512 MiB; the template is 1 vCPU, 256 MiB",
    )
    expect(whyNotTemplate(plan(spec(), { initrd: '/run/c1/initrd.cpio.gz' }), guest)).toMatch(
      /another kernel or initramfs/,
    )
    // A plan with a part the template's fixed device set has not (a network, from another branch).
    const withNet = { ...plan(spec()), net: { tap: 'tap0' } } as VmPlan
    expect(whyNotTemplate(withNet, guest)).toBe(
      "the container needs net, which the template's fixed device set has not",
    )
    expect(whyNotTemplate({ ...plan(spec()), net: undefined } as VmPlan, guest)).toBeUndefined()
  })

  it('overrides give each clone its sockets, console log and directories, unused slots the empty one', () => {
    const p = plan(
      spec({
        root: { path: '/var/lib/docker/x/merged', readonly: true },
        mounts: [{ destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'rw'] }],
      }),
    )
    const overrides = templateOverrides(p, '/cache/t/empty')
    const template = vmManifest(
      templatePlan(guest, { consoleLog: '/b/console', vsockPath: '/b/v.sock', empty: '/b/empty' }),
    )
    const clone = applyOverrides(template, overrides) as {
      components: Record<string, Record<string, unknown>>
    }
    expect(clone.components.serial).toMatchObject({ path: '/run/c1/console.log' })
    expect(clone.components.vsock).toMatchObject({ path: '/tmp/vmm-oci-1/vsock.sock', cid: 3 })
    expect(clone.components['fs-rootfs']).toMatchObject({
      tag: 'rootfs',
      path: '/var/lib/docker/x/merged',
      readonly: true,
    })
    expect(clone.components['fs-bind1']).toMatchObject({ tag: 'bind1', path: '/etc', readonly: false })
    for (const t of ['bind2', 'bind3', 'bind4'])
      expect(clone.components[`fs-${t}`]).toMatchObject({ tag: t, path: '/cache/t/empty', readonly: true })
    // Only host-side properties: never a resource (the guest's drivers were set up with them).
    expect(overrides.every((o) => ['path', 'readonly'].includes(o.property))).toBe(true)
    // The template itself is not changed.
    expect((template.components as Record<string, { path: string }>)['fs-rootfs']!.path).toBe('/b/empty')
  })

  it('boot message: the clock as seconds and nanoseconds, then the random bytes', () => {
    const b = bootPayload(1_764_000_000_123_456_789n, new Uint8Array(32).fill(7))
    expect(b.readBigUInt64LE(0)).toBe(1_764_000_000n)
    expect(b.readUInt32LE(8)).toBe(123_456_789)
    expect([...b.subarray(12)]).toEqual(new Array(32).fill(7))
    expect(() => bootPayload(0n, new Uint8Array(31))).toThrow(/at least 32/)
  })
})
