import { ContainerModule, inject, injectable } from 'inversify'
import type { ComponentType } from '../src/component/component-type.js'
import { ComponentRegistry } from '../src/component/registry.js'
import type { ComponentResources } from '../src/component/resources.js'
import { referenceToken, Tokens } from '../src/component/tokens.js'
import { registerBuiltins } from '../src/components/builtins.js'
import { sizeSchema } from '../src/manifest/schema.js'
import { type AddressSpace, MemoryRegion } from '../src/memory/address-space.js'

/** A register file: reads return the last byte written at each offset; raises its IRQ on a write to offset 7. */
@injectable()
export class Registers {
  readonly bytes: Uint8Array
  constructor(
    @inject(Tokens.Config) readonly config: { registers: number },
    @inject(Tokens.Resources) readonly resources: ComponentResources,
  ) {
    this.bytes = new Uint8Array(config.registers)
  }
  read(offset: number, data: Uint8Array): void {
    data.set(this.bytes.subarray(offset, offset + data.length))
  }
  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset)
    if (offset === 7) this.resources.irq('irq').pulse()
  }
}

export const portDeviceType: ComponentType<{ registers: number }> = {
  name: 'test-port',
  description: 'test: 8 port registers and an interrupt line',
  schema: {
    properties: { registers: { type: 'integer', minimum: 8, default: 8 }, label: { type: 'string' } },
  },
  resources: (c) => [
    { kind: 'pio', name: 'ports', size: c.registers, align: 8 },
    { kind: 'irq', name: 'irq' },
  ],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Registers)),
}

export const mmioDeviceType: ComponentType<{ registers: number; window: number }> = {
  name: 'test-mmio',
  description: 'test: MMIO registers',
  schema: {
    properties: { registers: { type: 'integer', default: 16 }, window: { ...sizeSchema, default: 0x1000 } },
  },
  resources: (c) => [{ kind: 'mmio', name: 'regs', size: c.window, align: 0x1000 }],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Registers)),
}

/** Holds references to other components: `parent` (one, any type) and `peers` (a list of test-port). */
@injectable()
export class Link {
  constructor(
    @inject(Tokens.Id) readonly id: string,
    @inject(referenceToken('parent')) readonly parent: unknown,
  ) {}
}

export const linkType: ComponentType = {
  name: 'test-link',
  description: 'test: references',
  schema: {
    properties: { parent: { type: 'string' }, peers: { type: 'array', items: { type: 'string' } } },
    required: ['parent'],
  },
  references: [{ property: 'parent' }, { property: 'peers', types: ['test-port'] }],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Link)),
}

@injectable()
class Broken {
  constructor() {
    throw new Error('broken on purpose')
  }
}

export const brokenType: ComponentType = {
  name: 'test-broken',
  description: 'test: its constructor throws',
  schema: { properties: {} },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Broken)),
}

export function testRegistry(): ComponentRegistry {
  const r = registerBuiltins(new ComponentRegistry())
  r.register(portDeviceType)
  r.register(mmioDeviceType)
  r.register(linkType)
  r.register(brokenType)
  r.register(barType)
  return r
}

/** A PCI-BAR-like MMIO region the component places in the stacked address space itself. */
@injectable()
export class Bar {
  readonly bytes = new Uint8Array(0x1000)
  readonly region: MemoryRegion
  constructor(
    @inject(Tokens.AddressSpace) space: AddressSpace,
    @inject(Tokens.Config) config: { address: number },
  ) {
    const bytes = this.bytes
    const device = {
      read: (offset: number, data: Uint8Array) => data.set(bytes.subarray(offset, offset + data.length)),
      write: (offset: number, data: Uint8Array) => bytes.set(data, offset),
    }
    this.region = MemoryRegion.mmio('bar', device, 0x1000)
    space.root.addSubregion(this.region, config.address, 1)
  }
}

export const barType: ComponentType = {
  name: 'test-bar',
  description: 'test: an MMIO region in the stacked address space',
  schema: { properties: { address: { type: 'integer' } }, required: ['address'] },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Bar)),
}
