// What a management stack asks before it drives a machine (libvirt's QEMU driver probes about 50
// commands, ../../../docs/control.md): answered from what the machine really is, never invented.
// Shapes from QEMU's qapi/machine.json, machine-target.json, qom.json, char.json, misc.json.
// Where we have nothing of a kind (iothreads, CPU hot-plug) the answer says so as QEMU would.
import type { ComponentType } from '@vmm/core'
import type { Controller, Verb } from './controller.js'
import { CommandError } from './errors.js'
import { hmp } from './hmp.js'
import type { TypeSpec } from './introspect.js'

const none = { args: {} } as const
/** The CPU model we give every vCPU: the host's CPUID less what the hypervisor hides (`-cpu host`). */
export const CPU_TYPE = 'host-x86_64-cpu'
/** The one machine type: the manifest says what the machine is made of. */
export const MACHINE_TYPE = 'vmm'
/** QEMU's answer when no -uuid was given. */
const NULL_UUID = '00000000-0000-0000-0000-000000000000'

const propertyInfo: TypeSpec = {
  object: { name: 'str', type: 'str', '*description': 'str', '*default-value': 'any' },
}

/** ObjectPropertyInfo (qapi/qom.json) for each property of a component type's schema. */
export function typeProperties(
  t: ComponentType,
): { name: string; type: string; description?: string; 'default-value'?: unknown }[] {
  const props = (t.schema as { properties?: Record<string, Record<string, unknown>> }).properties ?? {}
  return Object.entries(props).map(([name, p]) => ({
    name,
    type: qomType(p),
    ...(typeof p.description === 'string' ? { description: p.description } : {}),
    ...(p.default !== undefined ? { 'default-value': p.default } : {}),
  }))
}

/** A JSON Schema property as a QOM property type name. */
function qomType(p: Record<string, unknown>): string {
  if (Array.isArray(p.enum)) return 'str'
  switch (p.type) {
    case 'integer':
      return 'int'
    case 'number':
      return 'number'
    case 'boolean':
      return 'bool'
    case 'array':
      return 'array'
    case 'object':
      return 'object'
    default:
      return 'str'
  }
}

function typeNamed(c: Controller, name: string): ComponentType | undefined {
  return (
    c.machine.registry?.get(name) ?? c.machine.manifest.components.find((r) => r.type.name === name)?.type
  )
}

function allTypes(c: Controller): ComponentType[] {
  if (c.machine.registry) return c.machine.registry.all()
  return [...new Map(c.machine.manifest.components.map((r) => [r.type.name, r.type])).values()]
}

/** The QOM tree as far as we have one: /machine/peripheral/<component id>, /machine/unattached/device[<vCPU>]. */
function qomList(c: Controller, path: string) {
  const type = { name: 'type', type: 'string' }
  const parts = path.split('/').filter((p) => p !== '')
  if (!path.startsWith('/')) throw new CommandError('DeviceNotFound', `Device '${path}' not found`)
  if (parts.length === 0) return [type, { name: 'machine', type: `child<${MACHINE_TYPE}-machine>` }]
  if (parts[0] === 'machine') {
    if (parts.length === 1)
      return [
        type,
        { name: 'peripheral', type: 'child<container>' },
        { name: 'unattached', type: 'child<container>' },
      ]
    if (parts[1] === 'peripheral' && parts.length === 2)
      return [type, ...c.machine.components.map((b) => ({ name: b.id, type: `child<${b.type}>` }))]
    if (parts[1] === 'unattached' && parts.length === 2)
      return [type, ...c.machine.vcpus.map((v) => ({ name: `device[${v.id}]`, type: `child<${CPU_TYPE}>` }))]
    if (parts[1] === 'peripheral' && parts.length === 3) {
      const b = c.machine.components.find((x) => x.id === parts[2])
      const t = b && typeNamed(c, b.type)
      if (t) return [type, ...typeProperties(t).map(({ name, type }) => ({ name, type }))]
    }
  }
  throw new CommandError('DeviceNotFound', `Device '${path}' not found`)
}

/** The character back ends: each component's console (serial `console`, virtio-console `backend`) and chardev-add's. */
function chardevs(c: Controller) {
  const out: { label: string; filename: string; 'frontend-open': boolean }[] = []
  for (const r of c.machine.manifest.components) {
    const kind = r.config.console ?? r.config.backend
    const path = typeof r.config.path === 'string' ? r.config.path : ''
    if (kind === 'stdio') out.push({ label: r.id, filename: 'stdio', 'frontend-open': true })
    else if (kind === 'file') out.push({ label: r.id, filename: `file:${path}`, 'frontend-open': true })
    else if (kind === 'socket')
      out.push({ label: r.id, filename: `unix:${path},server=on`, 'frontend-open': true })
  }
  for (const [label, b] of c.backends)
    if (b.kind === 'chardev')
      out.push({ label, filename: `unix:${b.path},server=on`, 'frontend-open': false })
  return out
}

export const PROBES: Record<string, Verb> = {
  'query-target': {
    description: 'the guest architecture: {arch}',
    args: none,
    returns: { object: { arch: 'str' } },
    run: () => ({ arch: 'x86_64' }),
  },
  'query-kvm': {
    description: 'whether KVM runs the guest: {enabled, present}',
    args: none,
    returns: { object: { enabled: 'bool', present: 'bool' } },
    // present: vmm always has its KVM back end; enabled: this machine runs on it (not --hypervisor test).
    run: (c) => ({ enabled: c.machine.hypervisor.name === 'kvm', present: true }),
  },
  'query-machines': {
    description: 'the machine types: one, whose make-up the manifest gives',
    args: none,
    returns: {
      array: {
        object: {
          name: 'str',
          '*is-default': 'bool',
          'cpu-max': 'int',
          'hotpluggable-cpus': 'bool',
          'numa-mem-supported': 'bool',
          deprecated: 'bool',
          '*default-cpu-type': 'str',
        },
      },
    },
    run: () => [
      {
        name: MACHINE_TYPE,
        'is-default': true,
        'cpu-max': 255, // the manifest schema's machine.vcpus maximum
        'hotpluggable-cpus': false,
        'numa-mem-supported': false,
        deprecated: false,
        'default-cpu-type': CPU_TYPE,
      },
    ],
  },
  'query-cpu-definitions': {
    description: 'the CPU models: host only (the host CPUID less what the hypervisor hides)',
    args: none,
    returns: {
      array: {
        object: {
          name: 'str',
          '*migration-safe': 'bool',
          static: 'bool',
          typename: 'str',
          deprecated: 'bool',
        },
      },
    },
    run: () => [
      { name: 'host', 'migration-safe': false, static: false, typename: CPU_TYPE, deprecated: false },
    ],
  },
  'query-hotpluggable-cpus': {
    description: 'CPU hot-plug: not supported (an error, as QEMU answers for such machines)',
    args: none,
    returns: { array: 'any' },
    run: () => {
      throw new CommandError('GenericError', 'machine does not support hot-plugging CPUs')
    },
  },
  'qom-list-types': {
    description: 'the component types (every one a device, parent "device")',
    args: {
      args: { implements: { type: 'string', optional: true }, abstract: { type: 'boolean', optional: true } },
    },
    returns: { array: { object: { name: 'str', '*abstract': 'bool', '*parent': 'str' } } },
    run: (c, a) => {
      const types = allTypes(c).map((t) => ({ name: t.name, parent: 'device' }))
      const base = a.abstract === true ? [{ name: 'device', abstract: true }] : []
      if (a.implements === undefined || a.implements === 'device') return [...base, ...types]
      return types.filter((t) => t.name === a.implements)
    },
  },
  'qom-list': {
    description: 'the children and properties at a QOM path (/machine/peripheral/<id> for a component)',
    args: { args: { path: { type: 'string' } } },
    returns: { array: { object: { name: 'str', type: 'str' } } },
    run: (c, a) => qomList(c, a.path as string),
  },
  'device-list-properties': {
    description: "a component type's properties, from its schema",
    args: { args: { typename: { type: 'string' } } },
    returns: { array: propertyInfo },
    run: (c, a) => {
      const t = typeNamed(c, a.typename as string)
      if (!t) throw new CommandError('DeviceNotFound', `Device '${String(a.typename)}' not found`)
      return typeProperties(t)
    },
  },
  'query-name': {
    description: 'the machine name: {name}, absent when it has none',
    args: none,
    returns: { object: { '*name': 'str' } },
    run: (c) => (c.identity.name !== undefined ? { name: c.identity.name } : {}),
  },
  'query-uuid': {
    description: 'the machine UUID: {UUID} (all zeros when none was given, as QEMU)',
    args: none,
    returns: { object: { UUID: 'str' } },
    run: (c) => ({ UUID: c.identity.uuid ?? NULL_UUID }),
  },
  'query-chardev': {
    description: 'the character back ends: consoles and chardev-add sockets',
    args: none,
    returns: { array: { object: { label: 'str', filename: 'str', 'frontend-open': 'bool' } } },
    run: (c) => chardevs(c),
  },
  'query-iothreads': {
    description: 'I/O threads: none (the event loop does host I/O)',
    args: none,
    returns: { array: 'any' },
    run: () => [],
  },
  'query-current-machine': {
    description: 'the running machine: {wakeup-suspend-support} (no ACPI S3)',
    args: none,
    returns: { object: { 'wakeup-suspend-support': 'bool' } },
    run: () => ({ 'wakeup-suspend-support': false }),
  },
  'human-monitor-command': {
    description: 'a few HMP commands as text: info status|version|kvm|name|uuid|cpus, help',
    args: { args: { 'command-line': { type: 'string' }, 'cpu-index': { type: 'int', optional: true } } },
    returns: 'str',
    run: (c, a) => hmp(c, a['command-line'] as string),
  },
}
