// The verbs, by their QMP names (QEMU's qapi/*.json; StratoVirt's and Kata's where they differ).
// Each takes the arguments it declares (validated before it runs) and returns the QMP `return`
// value. Names of our own carry `x-`.
import { isHotpluggable } from '@vmm/core'
import { backendProperties, blockBackend, charBackend, netBackend } from './backends.js'
import type { BalloonSource, Controller, Verb } from './controller.js'
import { CommandError } from './errors.js'
import { EVENT_DATA, EVENT_NAMES } from './events.js'
import { argsType, qmpSchema, type TypeSpec } from './introspect.js'
import { PROBES } from './probes.js'
import { runState } from './run-state.js'
import { SNAPSHOT_VERBS } from './snapshot-verbs.js'
import { VMGENID_VERBS } from './vmgenid-verbs.js'

export { runState } from './run-state.js'

const none = { args: {} } as const

/** QMP's RunState values we report (qapi/run-state.json). */
const RUN_STATE: TypeSpec = { enum: ['prelaunch', 'running', 'paused', 'shutdown'] }
const nameList: TypeSpec = { array: { object: { name: 'str' } } }

function expectLive(c: Controller, verb: string): void {
  const s = c.machine.state
  if (s !== 'running' && s !== 'paused')
    throw new CommandError('GenericError', `${verb}: the machine is ${runState(s)}, not running or paused`)
}

/** The virtio-balloon device of a component, found by shape (its transport's `device`). */
interface BalloonLike extends BalloonSource {
  setTarget(pages: number): void
}
function balloonOf(c: Controller): BalloonLike {
  for (const b of c.machine.components) {
    const d = (b.instance as { device?: unknown }).device as Partial<BalloonLike> | undefined
    if (d && typeof d.setTarget === 'function' && typeof d.actualPages === 'number') return d as BalloonLike
  }
  throw new CommandError('DeviceNotActive', 'No balloon device has been activated')
}
const PAGE = 4096

export const VERBS: Record<string, Verb> = {
  'query-status': {
    description: 'whether the guest runs: {running, singlestep, status}',
    args: none,
    returns: { object: { running: 'bool', singlestep: 'bool', status: RUN_STATE } },
    run: (c) => {
      const status = runState(c.machine.state)
      return { running: status === 'running', singlestep: false, status }
    },
  },
  stop: {
    description: 'pause the vCPUs and devices (STOP)',
    args: none,
    run: async (c) => {
      if (c.machine.state === 'paused') return
      expectLive(c, 'stop')
      await c.machine.pause()
    },
  },
  cont: {
    description: 'resume a paused machine (RESUME)',
    args: none,
    run: async (c) => {
      if (c.machine.state === 'running') return
      expectLive(c, 'cont')
      await c.machine.resume()
    },
  },
  system_powerdown: {
    description: 'press the power button (ACPI or keyboard); the guest decides (POWERDOWN)',
    args: none,
    run: (c) => {
      expectLive(c, 'system_powerdown')
      if (c.machine.state === 'paused')
        throw new CommandError('GenericError', 'system_powerdown: the machine is paused; cont first')
      const by = c.machine.requestShutdown()
      if (by === undefined)
        throw new CommandError(
          'GenericError',
          'system_powerdown: no component can ask this guest to power off',
        )
      c.emit({ event: 'POWERDOWN' })
    },
  },
  system_reset: {
    description:
      'reset in place: vCPUs, devices (virtio to status 0) and guest RAM as after load; a paused machine stays paused (RESET)',
    args: none,
    run: async (c) => {
      expectLive(c, 'system_reset')
      await c.machine.reset() // its refusal says why (a restored machine), a GenericError here
      c.emit({ event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } })
    },
  },
  quit: {
    description: 'end the run at once (SHUTDOWN host-qmp-quit)',
    args: none,
    run: (c) => {
      expectLive(c, 'quit')
      c.hostReason = 'host-qmp-quit'
      // After the answer is written, as QEMU does.
      setImmediate(() => void c.machine.stop().catch(() => {}))
    },
  },
  device_add: {
    description:
      'hot-plug a component: driver = component type, id (generated when absent), its manifest properties; drive=/netdev=/chardev= name a back end; bus=pci.0 is the first PCI host bridge',
    args: {
      args: {
        driver: { type: 'string' },
        id: { type: 'string', optional: true },
        drive: { type: 'string', optional: true },
        netdev: { type: 'string', optional: true },
        chardev: { type: 'string', optional: true },
      },
      rest: true,
    },
    run: async (c, a) => {
      expectLive(c, 'device_add')
      const { driver, id: given, drive, netdev, chardev, ...properties } = a
      // QEMU allows a device without an id (it lands under /machine/peripheral-anon); ours need
      // one to be a manifest node, so it gets the first free `anon<N>` (x-query-components shows it).
      const id = typeof given === 'string' ? given : freeId(c)
      const node: Record<string, unknown> = { type: driver, ...properties }
      if (typeof node.bus === 'string') node.bus = busComponent(c, node.bus)
      for (const [property, name] of [
        ['drive', drive],
        ['netdev', netdev],
        ['chardev', chardev],
      ] as const) {
        if (name === undefined) continue
        const b = c.backends.get(name as string)
        if (!b)
          throw new CommandError('DeviceNotFound', `device_add: no back end '${String(name)}' (${property})`)
        Object.assign(node, backendProperties(property, b))
      }
      // Validated by the component type's schema and resolved before anything is built.
      await c.machine.hotplug(id, node)
      c.added.set(id, node)
    },
  },
  device_del: {
    description: 'ask the guest to release a component; DEVICE_DELETED when it has',
    args: { args: { id: { type: 'string' } } },
    run: (c, a) => {
      expectLive(c, 'device_del')
      const id = a.id as string
      const b = c.machine.components.find((x) => x.id === id)
      if (!b) throw new CommandError('DeviceNotFound', `Device '${id}' not found`)
      if (!isHotpluggable(b.instance))
        throw new CommandError(
          'GenericError',
          `device_del: ${id} (${b.type}) cannot be removed from a running machine`,
        )
      // Asynchronous as in QEMU: the answer comes now, DEVICE_DELETED once the guest let go.
      void c.machine.unplug(id).then(
        () => c.added.delete(id),
        () => {},
      )
    },
  },
  'blockdev-add': {
    description:
      'name a disk image for device_add drive=: {driver: raw, file: {driver: file, filename}, node-name}',
    args: {
      args: {
        driver: { type: 'string' },
        'node-name': { type: 'string' },
        file: { type: 'any', optional: true },
        filename: { type: 'string', optional: true },
        'read-only': { type: 'boolean', optional: true },
        cache: { type: 'object', optional: true },
        'auto-read-only': { type: 'boolean', optional: true },
        discard: { type: 'string', optional: true },
      },
    },
    run: (c, a) => addBackend(c, a['node-name'] as string, blockBackend(a)),
  },
  'blockdev-del': {
    description: 'forget a blockdev-add name',
    args: { args: { 'node-name': { type: 'string' } } },
    run: (c, a) => delBackend(c, a['node-name'] as string),
  },
  netdev_add: {
    description: 'name a TAP interface for device_add netdev=: {type: tap, id, ifname}',
    args: {
      args: {
        type: { type: 'string' },
        id: { type: 'string' },
        ifname: { type: 'string', optional: true },
        vhost: { type: 'any', optional: true },
        script: { type: 'string', optional: true },
        downscript: { type: 'string', optional: true },
      },
    },
    run: (c, a) => addBackend(c, a.id as string, netBackend(a)),
  },
  netdev_del: {
    description: 'forget a netdev_add name',
    args: { args: { id: { type: 'string' } } },
    run: (c, a) => delBackend(c, a.id as string),
  },
  'chardev-add': {
    description:
      'name a Unix socket for device_add chardev=: {id, backend: {type: socket, data: {addr: {type: unix, data: {path}}}}}',
    args: { args: { id: { type: 'string' }, backend: { type: 'object' } } },
    run: (c, a) => addBackend(c, a.id as string, charBackend(a.backend as Record<string, unknown>)),
  },
  'chardev-remove': {
    description: 'forget a chardev-add name',
    args: { args: { id: { type: 'string' } } },
    run: (c, a) => delBackend(c, a.id as string),
  },
  'query-cpus-fast': {
    description: 'the vCPUs',
    args: none,
    returns: {
      array: {
        object: {
          'cpu-index': 'int',
          'qom-path': 'str',
          'thread-id': 'int',
          target: 'str',
          '*props': { object: { 'core-id': 'int', 'thread-id': 'int', 'socket-id': 'int' } },
        },
      },
    },
    run: (c) =>
      c.machine.vcpus.map((v) => ({
        'cpu-index': v.id,
        'qom-path': `/machine/unattached/device[${v.id}]`,
        'thread-id': process.pid,
        target: 'x86_64',
        props: { 'core-id': v.id, 'thread-id': 0, 'socket-id': 0 },
      })),
  },
  'query-block': {
    description: 'the block devices: disk components with their image',
    args: none,
    returns: {
      array: {
        object: {
          device: 'str',
          qdev: 'str',
          type: 'str',
          removable: 'bool',
          locked: 'bool',
          inserted: {
            object: { file: 'str', ro: 'bool', drv: 'str', backing_file_depth: 'int', encrypted: 'bool' },
          },
        },
      },
    },
    run: (c) => {
      const nodes = new Map<string, { type: string; config: Record<string, unknown> }>()
      for (const r of c.machine.manifest.components) nodes.set(r.id, { type: r.type.name, config: r.config })
      for (const [id, n] of c.added) nodes.set(id, { type: String(n.type), config: n })
      return c.machine.components
        .filter((b) => b.type.includes('blk') && nodes.has(b.id))
        .map((b) => {
          const config = nodes.get(b.id)!.config
          return {
            device: '',
            qdev: b.id,
            type: 'unknown',
            removable: false,
            locked: false,
            inserted: {
              file: config.path,
              ro: config.readOnly === true,
              drv: 'raw',
              backing_file_depth: 0,
              encrypted: false,
            },
          }
        })
    },
  },
  'x-query-components': {
    description: 'the component graph: id, type and references of each component',
    args: none,
    returns: { array: { object: { id: 'str', type: 'str', references: 'any', added: 'bool' } } },
    run: (c) => {
      const resolved = new Map(c.machine.manifest.components.map((r) => [r.id, r]))
      return c.machine.components.map((b) => ({
        id: b.id,
        type: b.type,
        references: Object.fromEntries(resolved.get(b.id)?.references ?? []),
        added: c.added.has(b.id),
      }))
    },
  },
  balloon: {
    description: 'set the guest memory size the balloon aims for, in bytes (BALLOON_CHANGED)',
    args: { args: { value: { type: 'int' } } },
    run: (c, a) => {
      expectLive(c, 'balloon')
      const ram = c.machine.manifest.machine.memory
      const value = a.value as number
      if (value <= 0 || value > ram)
        throw new CommandError(
          'GenericError',
          `balloon: value must be between 1 and the guest's ${ram} bytes`,
        )
      const d = balloonOf(c)
      const target = Math.floor((ram - value) / PAGE)
      d.setTarget(target)
      c.watchBalloon(d, ram, ram - target * PAGE, PAGE)
    },
  },
  'query-balloon': {
    description: 'the guest memory size the balloon leaves: {actual} in bytes',
    args: none,
    returns: { object: { actual: 'int' } },
    run: (c) => ({ actual: c.machine.manifest.machine.memory - balloonOf(c).actualPages * PAGE }),
  },
  'query-version': {
    description: 'the QEMU version we answer as, and what we are',
    args: none,
    returns: { object: { qemu: { object: { major: 'int', minor: 'int', micro: 'int' } }, package: 'str' } },
    run: (c) => c.version,
  },
  'query-commands': {
    description: 'every command',
    args: none,
    returns: nameList,
    run: (c) => [...c.commands, 'qmp_capabilities'].map((name) => ({ name })),
  },
  'query-events': {
    description: 'every event',
    args: none,
    returns: nameList,
    run: () => EVENT_NAMES.map((name) => ({ name })),
  },
  'query-qmp-schema': {
    description: "the QMP ABI, generated from the verbs' declarations (QEMU's SchemaInfo, masked type names)",
    args: none,
    returns: { array: 'any' },
    run: (c) =>
      qmpSchema({
        commands: [
          ...c.commands.map((name) => {
            const v = c.verb(name)!
            return { name, args: argsType(v.args), returns: v.returns }
          }),
          // The server's own (qmp/server.ts): QMPCapability has only 'oob', which we do not offer.
          { name: 'qmp_capabilities', args: { object: { '*enable': { array: { enum: ['oob'] } } } } },
        ],
        events: EVENT_NAMES.map((name) => ({ name, data: EVENT_DATA[name] })),
      }),
  },
  ...PROBES,
  ...SNAPSHOT_VERBS,
  ...VMGENID_VERBS,
}

function freeId(c: Controller): string {
  const taken = new Set(c.machine.components.map((b) => b.id))
  let n = 0
  while (taken.has(`anon${n}`)) n++
  return `anon${n}`
}

/**
 * QEMU's bus names as libvirt sends them (`bus=pci.0`, `pcie.0` on q35): the N-th PCI host
 * bridge component. Our PCI devices name their host bridge by component id (`bus: pci`); a name
 * that is a component id, or that no bridge answers to, is left for the schema to judge.
 */
function busComponent(c: Controller, bus: string): string {
  if (c.machine.components.some((b) => b.id === bus)) return bus
  const m = /^pcie?\.(\d+)$/.exec(bus)
  if (!m) return bus
  const bridges = c.machine.components.filter((b) => b.type === 'pci-host-bridge')
  return bridges[Number(m[1])]?.id ?? bus
}

function addBackend(c: Controller, name: string, b: ReturnType<typeof blockBackend>): void {
  if (name === '') throw new CommandError('GenericError', 'a back end needs a non-empty name')
  if (c.backends.has(name))
    throw new CommandError('GenericError', `a back end named '${name}' exists already`)
  c.backends.set(name, b)
}

function delBackend(c: Controller, name: string): void {
  if (!c.backends.delete(name)) throw new CommandError('DeviceNotFound', `no back end named '${name}'`)
}
