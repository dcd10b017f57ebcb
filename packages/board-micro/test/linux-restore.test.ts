// The linux loader's input checks at resolution, and why a restore skips them: a machine rebuilt
// from a snapshot loads nothing (the kernel runs already, in the snapshot's RAM), so its kernel and
// initrd files are neither read (reading and inflating an initramfs cost every restore ~50 ms
// here) nor required to exist any more.
import { ComponentRegistry, ManifestError, manifestFromObject, resolveManifest } from '@vmm/core'
import { describe, expect, it } from 'vitest'
import { linuxType } from '../src/linux.js'

const manifest = () =>
  manifestFromObject({
    machine: { memory: '16MiB' },
    components: { kernel: { type: 'linux', kernel: '/nonexistent/vmlinux', initrd: '/nonexistent/initrd' } },
  })
function registry(): ComponentRegistry {
  const r = new ComponentRegistry()
  r.register(linuxType)
  return r
}

describe('linux loader resources', () => {
  it('a manifest naming a missing kernel is refused, naming the field', async () => {
    const e = await resolveManifest(manifest(), registry()).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(ManifestError)
    expect(String(e)).toMatch(/kernel.*\/nonexistent\/vmlinux/s)
  })

  it('the same manifest resolves for a restore, which loads nothing', async () => {
    const resolved = await resolveManifest(manifest(), registry(), { restoring: true })
    expect(resolved.components.map((c) => c.id)).toEqual(['kernel'])
  })
})
