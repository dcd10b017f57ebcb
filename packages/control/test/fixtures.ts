// A running machine on the test hypervisor (a `jmp $` guest) with a hot-pluggable test type.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ComponentRegistry,
  type ComponentResources,
  type ComponentType,
  ContainerModule,
  inject,
  injectable,
  Machine,
  registerBuiltins,
  Tokens,
} from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'

/** A hot-pluggable port device; the guest "lets go" of it as soon as asked. */
@injectable()
export class Slot {
  readonly log: string[] = []
  constructor(@inject(Tokens.Resources) readonly resources: ComponentResources) {}
  read(_offset: number, data: Uint8Array): void {
    data.fill(0)
  }
  write(): void {}
  plugged(): void {
    this.log.push('plugged')
  }
  async unplug(): Promise<void> {
    this.log.push('unplug')
  }
}

export const slotType: ComponentType = {
  name: 'test-slot',
  description: 'test: a hot-pluggable port device',
  schema: {
    properties: { label: { type: 'string', description: 'a name' }, bus: { type: 'string' } },
    required: [],
  },
  resources: () => [{ kind: 'pio', name: 'port', size: 4, align: 4 }],
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Slot)),
}

/** Stands in for @vmm/pci's host bridge by name only (device_add maps bus=pci.0 to it). */
export const fakeBridgeType: ComponentType = {
  name: 'pci-host-bridge',
  description: 'test: a component named like the PCI host bridge',
  schema: { properties: {} },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Slot)),
}

export async function runningMachine(): Promise<Machine> {
  const registry = registerBuiltins(new ComponentRegistry())
  registry.register(slotType)
  registry.register(fakeBridgeType)
  registry.register(fakeBalloonType)
  registry.register(fakeVmGenIdType)
  const dir = mkdtempSync(join(tmpdir(), 'vmm-control-'))
  writeFileSync(join(dir, 'guest.bin'), Uint8Array.of(0xeb, 0xfe)) // jmp $
  const m = await Machine.fromObject(
    {
      machine: { memory: '1MiB', irqchip: true },
      components: { guest: { type: 'raw-image', file: join(dir, 'guest.bin'), address: 0x7c00 } },
    },
    { hypervisor: new TestHypervisor(), registry },
  )
  await m.load()
  await m.start()
  return m
}

/** A balloon-shaped component (its `device` has setTarget / actualPages); the "guest" follows the target. */
@injectable()
export class FakeBalloon {
  readonly device = {
    target: 0,
    actualPages: 0,
    setTarget(pages: number) {
      this.target = pages
      setTimeout(() => (this.actualPages = pages), 50)
    },
  }
}

export const fakeBalloonType: ComponentType = {
  name: 'test-balloon',
  description: 'test: a balloon the guest follows at once',
  schema: { properties: {} },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(FakeBalloon)),
}

/** A VM Generation ID-shaped component (guid, newGeneration), as @vmm/board-standard's vmgenid. */
@injectable()
export class FakeVmGenId {
  private n = 0
  get guid(): string {
    return `00000000-0000-0000-0000-${String(this.n).padStart(12, '0')}`
  }
  newGeneration(): string {
    this.n++
    return this.guid
  }
}

export const fakeVmGenIdType: ComponentType = {
  name: 'test-vmgenid',
  description: 'test: a generation ID that counts',
  schema: { properties: {} },
  module: new ContainerModule(({ bind }) => void bind(Tokens.Component).to(FakeVmGenId)),
}
