// A vmm plugin in plain JavaScript, without decorators: the module builds the device itself,
// asking the component's container for what the constructor needs (toDynamicValue), where
// TypeScript would write @injectable and @inject.
import { ContainerModule, Tokens } from '@vmm/core'

class DebugExit {
  constructor(machine) {
    this.machine = machine
  }
  read(_offset, data) {
    data.fill(0xff)
  }
  write(_offset, data) {
    this.machine.requestStop(`guest wrote ${data[0]} to debug-exit`, data[0])
  }
}

export const vmmPluginApi = 1

export function register(registry) {
  registry.register({
    name: 'debug-exit',
    description: 'A write to its port ends the VM with the byte written as exit code',
    schema: { properties: {} },
    resources: () => [{ kind: 'pio', name: 'port', size: 1 }],
    module: new ContainerModule(({ bind }) => {
      bind(Tokens.Component).toDynamicValue((context) => new DebugExit(context.get(Tokens.MachineControl)))
    }),
  })
}
