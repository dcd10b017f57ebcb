// The `debugcon` component type: the Debugcon of ./device.ts on one I/O port.
import type { ComponentType } from '../../component/component-type.js'
import { Tokens } from '../../component/tokens.js'
import { ContainerModule } from '../../third-party/inversify.js'
import { Debugcon, type DebugconConfig } from './device.js'

export const debugconType: ComponentType<DebugconConfig> = {
  name: 'debugcon',
  description: 'Bochs/QEMU debug console: guest writes to its port go to the host (port 0xe9 by convention)',
  schema: {
    properties: { output: { enum: ['stdout', 'stderr', 'none'], default: 'stdout' } },
  },
  resources: () => [{ kind: 'pio', name: 'port', size: 1 }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(Debugcon)
  }),
}
