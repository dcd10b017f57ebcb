// A restore's overrides (snapshot/overrides.ts): parsed from `--set` text, applied to a copy of the
// snapshot's manifest, refused with a message naming the override when the component is not there
// or the property is one a restore must not change.
import { describe, expect, it } from 'vitest'
import { applyOverrides, parseOverride } from '../src/index.js'

const manifest = {
  machine: { memory: '256MiB' },
  components: {
    net0: { type: 'virtio-net', tap: 'tap0', resources: { irq: 5 } },
    vsock0: { type: 'virtio-vsock', cid: 3, path: '/run/v.sock' },
  },
}

describe('restore overrides', () => {
  it('parses <component>.<property>=<value>, JSON values as JSON, anything else as a string', () => {
    expect(parseOverride('net0.tap=tap7')).toEqual({ component: 'net0', property: 'tap', value: 'tap7' })
    expect(parseOverride('vsock0.cid=9')).toEqual({ component: 'vsock0', property: 'cid', value: 9 })
    expect(parseOverride('net0.mac=06:00:00:00:00:01').value).toBe('06:00:00:00:00:01')
    expect(parseOverride('p9.host.dir="/srv/a b"')).toEqual({
      component: 'p9',
      property: 'host.dir',
      value: '/srv/a b',
    })
    expect(() => parseOverride('net0tap=1')).toThrow(
      '--set net0tap=1: expected <component>.<property>=<value>, e.g. net0.tap=tap1',
    )
  })

  it('changes a copy, leaving the manifest it was given alone', () => {
    const out = applyOverrides(manifest, [
      parseOverride('net0.tap=tap7'),
      parseOverride('vsock0.cid=9'),
      parseOverride('vsock0.extra.deep=1'),
    ]) as typeof manifest & { components: { vsock0: { extra: unknown } } }
    expect(out.components.net0.tap).toBe('tap7')
    expect(out.components.vsock0).toMatchObject({ cid: 9, path: '/run/v.sock', extra: { deep: 1 } })
    expect(manifest.components.net0.tap).toBe('tap0')
  })

  it('refuses a component the snapshot lacks, a type or resource change, and prototype keys', () => {
    expect(() => applyOverrides(manifest, [parseOverride('net1.tap=x')])).toThrow(
      'override net1.tap=x: the snapshot has no component "net1" (it has: net0, vsock0)',
    )
    expect(() => applyOverrides(manifest, [parseOverride('net0.type=virtio-rng')])).toThrow(
      "override net0.type=virtio-rng: a component's type cannot change in a restore",
    )
    expect(() => applyOverrides(manifest, [parseOverride('net0.resources.irq=6')])).toThrow(
      "a component's resources cannot change",
    )
    expect(() => applyOverrides(manifest, [parseOverride('net0.__proto__.x=1')])).toThrow(
      '"__proto__" is not a property',
    )
    expect(() => applyOverrides(manifest, [parseOverride('net0.tap.x=1')])).toThrow(
      'net0.tap is not an object',
    )
  })
})
