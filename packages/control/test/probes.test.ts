// What libvirt and Kata probe before they drive a machine (src/probes.ts, src/introspect.ts):
// each answer in QEMU's shape and true of the machine it is asked about.
import { afterEach, describe, expect, it } from 'vitest'
import { Controller } from '../src/index.js'
import { runningMachine } from './fixtures.js'

let cleanup: (() => Promise<void>) | undefined
afterEach(async () => {
  await cleanup?.()
  cleanup = undefined
})

async function controlled() {
  const m = await runningMachine()
  const c = new Controller(m)
  cleanup = () => m.dispose()
  return { m, c }
}

type Info = { name: string; 'meta-type': string } & Record<string, unknown>

describe('query-qmp-schema', () => {
  it('introspects every command and event, and every type name it uses resolves, in SchemaInfo form', async () => {
    const { c } = await controlled()
    const schema = (await c.execute('query-qmp-schema')) as Info[]
    const byName = new Map(schema.map((i) => [i.name, i]))
    expect(byName.size).toBe(schema.length) // names are unique
    const commands = ((await c.execute('query-commands')) as { name: string }[]).map((x) => x.name)
    expect(
      schema
        .filter((i) => i['meta-type'] === 'command')
        .map((i) => i.name)
        .sort(),
    ).toEqual([...commands].sort())
    const events = ((await c.execute('query-events')) as { name: string }[]).map((x) => x.name)
    expect(
      schema
        .filter((i) => i['meta-type'] === 'event')
        .map((i) => i.name)
        .sort(),
    ).toEqual([...events].sort())
    // Every reference resolves: arg-type, ret-type, element-type, member types.
    for (const i of schema) {
      const refs = [i['arg-type'], i['ret-type'], i['element-type']]
      for (const m of (i.members as { type?: string }[] | undefined) ?? []) refs.push(m.type)
      for (const r of refs)
        if (r !== undefined) expect(byName.has(r as string), `${i.name} -> ${r}`).toBe(true)
    }
    expect(byName.get('0')).toEqual({ name: '0', 'meta-type': 'object', members: [] })
    // A command's arguments as declared: balloon {value: int}; device_del {id: str}.
    const members = (cmd: string, key = 'arg-type') =>
      byName.get(byName.get(cmd)![key] as string)!.members as { name: string; type: string; default?: null }[]
    expect(members('balloon')).toEqual([{ name: 'value', type: 'int' }])
    expect(members('device_add')).toContainEqual({ name: 'id', type: 'str', default: null })
    // query-status returns {running: bool, singlestep: bool, status: <RunState enum>}.
    const status = members('query-status', 'ret-type')
    expect(status.map((m) => m.name)).toEqual(['running', 'singlestep', 'status'])
    const runState = byName.get(status[2]!.type)!
    expect(runState['meta-type']).toBe('enum')
    expect(runState.values).toContain('paused')
    expect(byName.get('int')).toEqual({ name: 'int', 'meta-type': 'builtin', 'json-type': 'int' })
    expect(byName.get('stop')).toEqual({
      name: 'stop',
      'meta-type': 'command',
      'arg-type': '0',
      'ret-type': '0',
    })
    expect(byName.get(byName.get('SHUTDOWN')!['arg-type'] as string)!['meta-type']).toBe('object')
  })
})

describe('the probes', () => {
  it('answer target, KVM, machine types and CPU models as this machine is', async () => {
    const { c } = await controlled()
    expect(await c.execute('query-target')).toEqual({ arch: 'x86_64' })
    expect(await c.execute('query-kvm')).toEqual({ enabled: false, present: true }) // the test hypervisor
    const machines = (await c.execute('query-machines')) as Record<string, unknown>[]
    expect(machines).toHaveLength(1)
    expect(machines[0]).toMatchObject({ 'is-default': true, 'cpu-max': 255, 'hotpluggable-cpus': false })
    expect(await c.execute('query-cpu-definitions')).toEqual([
      {
        name: 'host',
        'migration-safe': false,
        static: false,
        typename: 'host-x86_64-cpu',
        deprecated: false,
      },
    ])
    await expect(c.execute('query-hotpluggable-cpus')).rejects.toThrow('does not support hot-plugging CPUs')
    expect(await c.execute('query-iothreads')).toEqual([])
    expect(await c.execute('query-name')).toEqual({})
    expect(await c.execute('query-uuid')).toEqual({ UUID: '00000000-0000-0000-0000-000000000000' })
    const named = new Controller(c.machine, undefined, {
      name: 'vm1',
      uuid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    })
    expect(await named.execute('query-name')).toEqual({ name: 'vm1' })
    expect(await named.execute('query-uuid')).toEqual({ UUID: '1b4e28ba-2fa1-11d2-883f-0016d3cca427' })
    named.close()
  })

  it('list the component types and their properties from their schemas', async () => {
    const { c } = await controlled()
    const types = (await c.execute('qom-list-types')) as { name: string; parent?: string }[]
    expect(types).toContainEqual({ name: 'test-slot', parent: 'device' })
    expect(types).toContainEqual({ name: 'raw-image', parent: 'device' })
    expect(await c.execute('qom-list-types', { implements: 'test-slot' })).toEqual([
      { name: 'test-slot', parent: 'device' },
    ])
    expect(await c.execute('qom-list-types', { implements: 'no-such' })).toEqual([])
    expect(await c.execute('device-list-properties', { typename: 'test-slot' })).toEqual([
      { name: 'label', type: 'str', description: 'a name' },
      { name: 'bus', type: 'str' },
    ])
    const raw = (await c.execute('device-list-properties', { typename: 'raw-image' })) as { name: string }[]
    expect(raw.map((p) => p.name)).toContain('file')
    await expect(c.execute('device-list-properties', { typename: 'nope' })).rejects.toMatchObject({
      errorClass: 'DeviceNotFound',
      message: "Device 'nope' not found",
    })
  })

  it('walk the QOM tree: components under /machine/peripheral, vCPUs under /machine/unattached', async () => {
    const { c } = await controlled()
    await c.execute('device_add', { driver: 'test-slot', id: 's1', label: 'x' })
    expect(await c.execute('qom-list', { path: '/' })).toContainEqual({
      name: 'machine',
      type: 'child<vmm-machine>',
    })
    expect(await c.execute('qom-list', { path: '/machine/peripheral' })).toEqual([
      { name: 'type', type: 'string' },
      { name: 'guest', type: 'child<raw-image>' },
      { name: 's1', type: 'child<test-slot>' },
    ])
    expect(await c.execute('qom-list', { path: '/machine/unattached' })).toEqual([
      { name: 'type', type: 'string' },
      { name: 'device[0]', type: 'child<host-x86_64-cpu>' },
    ])
    expect(await c.execute('qom-list', { path: '/machine/peripheral/s1' })).toEqual([
      { name: 'type', type: 'string' },
      { name: 'label', type: 'str' },
      { name: 'bus', type: 'str' },
    ])
    await expect(c.execute('qom-list', { path: '/machine/peripheral/zz' })).rejects.toMatchObject({
      errorClass: 'DeviceNotFound',
    })
  })

  it('query-chardev lists chardev-add sockets', async () => {
    const { c } = await controlled()
    expect(await c.execute('query-chardev')).toEqual([])
    await c.execute('chardev-add', {
      id: 'ch0',
      backend: {
        type: 'socket',
        data: { addr: { type: 'unix', data: { path: '/tmp/x.sock' } }, server: true },
      },
    })
    expect(await c.execute('query-chardev')).toEqual([
      { label: 'ch0', filename: 'unix:/tmp/x.sock,server=on', 'frontend-open': false },
    ])
  })

  it('human-monitor-command answers info status and a few more in HMP text; anything else is an unknown command', async () => {
    const { c } = await controlled()
    const hmp = (line: string) => c.execute('human-monitor-command', { 'command-line': line })
    expect(await hmp('info status')).toBe('VM status: running\r\n')
    await c.execute('stop')
    expect(await hmp('  info   status ')).toBe('VM status: paused\r\n')
    expect(await hmp('info version')).toMatch(/^7\.2\.0 \(vmm-/)
    expect(await hmp('info kvm')).toBe('kvm support: disabled\r\n')
    expect(await hmp('info cpus')).toMatch(/^\*CPU #0: thread_id=\d+\r\n$/)
    expect(await hmp('savevm x')).toBe("unknown command: 'savevm'\r\n")
    expect(await hmp('info mtree')).toBe("unknown command: 'info mtree'\r\n")
    expect(await hmp('help')).toContain('info status -- ')
  })
})

describe('device_add as libvirt sends it', () => {
  it('generates an id when none is given', async () => {
    const { m, c } = await controlled()
    await c.execute('device_add', { driver: 'test-slot' })
    await c.execute('device_add', { driver: 'test-slot' })
    expect(m.components.map((b) => b.id)).toEqual(['guest', 'anon0', 'anon1'])
  })

  it('maps bus=pci.0 (and pcie.0) to the first PCI host bridge component; a component id stays as is', async () => {
    const { c } = await controlled()
    await c.execute('device_add', { driver: 'pci-host-bridge', id: 'pcibr' })
    await c.execute('device_add', { driver: 'test-slot', id: 'a', bus: 'pci.0' })
    await c.execute('device_add', { driver: 'test-slot', id: 'b', bus: 'pcie.0' })
    await c.execute('device_add', { driver: 'test-slot', id: 'd', bus: 'pci.1' }) // no second bridge: as given
    await c.execute('device_add', { driver: 'test-slot', id: 'e', bus: 'pcibr' })
    expect(['a', 'b', 'd', 'e'].map((id) => c.added.get(id)!.bus)).toEqual([
      'pcibr',
      'pcibr',
      'pci.1',
      'pcibr',
    ])
  })
})
