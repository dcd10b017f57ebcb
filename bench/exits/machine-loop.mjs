// The whole-machine side of bench/exits: the same guest as loop.c, run as a manifest (a raw-image
// loader and one device component on the machine's PIO or MMIO bus), so each exit takes the path
// every device takes: @vmm/kvm's exit dispatch, the machine's exit policy, the bus lookup and the
// component's read/write. The device is a component type registered like a plugin's, through the
// DI container. Prints "<exits> <seconds>" from the first guest instruction to the guest's hlt.
import { ComponentRegistry, ContainerModule, Machine, registerBuiltins, Tokens } from '@vmm/core'
import { hypervisorProvider } from '@vmm/kvm'
import { LOAD, MEM_SIZE } from './guests.mjs'

const [path, kind] = process.argv.slice(2)
let exits = 0
let lastByte = 0
class Sink {
  read(_offset, data) {
    data.fill(0)
    exits++
  }
  write(_offset, data) {
    lastByte = data[0]
    exits++
  }
}
const registry = registerBuiltins(new ComponentRegistry())
registry.register({
  name: 'bench-sink',
  description: 'counts accesses (bench/exits)',
  schema: { properties: { kind: { enum: ['pio', 'mmio'] } } },
  resources: (config) =>
    config.kind === 'pio'
      ? [{ kind: 'pio', name: 'port', size: 1 }]
      : [{ kind: 'mmio', name: 'page', size: 0x1000 }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).toDynamicValue(() => new Sink())
  }),
})
const hypervisor = await hypervisorProvider.open()
const machine = await Machine.fromObject(
  {
    machine: { memory: MEM_SIZE },
    components: {
      guest: { type: 'raw-image', file: path, address: LOAD },
      sink: {
        type: 'bench-sink',
        kind,
        // guests.mjs: `out 0x10`, or a read of 0xF0010 (above RAM, so an MMIO exit)
        resources: kind === 'pio' ? { port: 0x10 } : { page: 0xf0000 },
      },
    },
  },
  { hypervisor, registry },
)
await machine.load()
const t0 = process.hrtime.bigint()
await machine.start()
const result = await machine.done
const seconds = Number(process.hrtime.bigint() - t0) / 1e9
if (result.status !== 'guest-halt')
  throw new Error(`the guest did not halt: ${result.status}: ${result.reason}`)
await machine.dispose()
hypervisor.dispose()
console.log(`${exits} ${seconds.toFixed(6)} ${lastByte}`)
