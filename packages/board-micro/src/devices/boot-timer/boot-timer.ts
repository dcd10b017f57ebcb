// The `boot-timer` component type: the BootTimer of ./device.ts on one MMIO page.
import { type ComponentType, ContainerModule, Tokens } from '@vmm/core'
import { BootTimer, type BootTimerConfig } from './device.js'

export const bootTimerType: ComponentType<BootTimerConfig> = {
  name: 'boot-timer',
  description: "Firecracker's boot timer: the guest writes 123 to its page when init starts",
  schema: { properties: { log: { type: 'boolean', default: true } } },
  resources: () => [{ kind: 'mmio', name: 'page', size: 0x1000, align: 0x1000 }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(BootTimer)
  }),
}
