import {
  type ComponentType,
  ContainerModule,
  inject,
  injectable,
  type MachineControl,
  type PioDevice,
  SavedState,
  Tokens,
} from '@vmm/core'

export interface DebugExitConfig {
  /**
   * qemu: the exit code is (value << 1) | 1, as with QEMU's isa-debug-exit, so test suites written
   * for QEMU keep working (and 0 cannot be signalled: a guest that never reaches the port does not
   * look like a pass). direct: the exit code is the value written.
   */
  mode: 'qemu' | 'direct'
}

/** Ends the machine when the guest writes to the port, with an exit code derived from the value. */
@injectable()
export class DebugExit implements PioDevice {
  constructor(
    @inject(Tokens.Config) private readonly config: DebugExitConfig,
    @inject(Tokens.MachineControl) private readonly machine: MachineControl,
    @inject(Tokens.Id) private readonly id: string,
  ) {}

  // Snapshottable: a write ends the run at once; there is nothing in flight and no state.
  quiesce(): void {}

  saveState(): Record<string, never> {
    return {}
  }

  restoreState(state: unknown): void {
    new SavedState(this.id, state).only()
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0xff) // write-only, like QEMU's
  }

  write(_offset: number, data: Uint8Array): void {
    let value = 0
    for (let i = data.length - 1; i >= 0; i--) value = value * 256 + data[i]!
    // Exit codes are 8 bits on POSIX.
    const code = (this.config.mode === 'qemu' ? (value << 1) | 1 : value) & 0xff
    this.machine.requestStop(`guest wrote ${value} to debug-exit`, code)
  }
}

export const debugExitType: ComponentType<DebugExitConfig> = {
  name: 'debug-exit',
  description: "QEMU's isa-debug-exit: a write to its port ends the VM with an exit code",
  schema: { properties: { mode: { enum: ['qemu', 'direct'], default: 'qemu' } } },
  resources: () => [{ kind: 'pio', name: 'port', size: 4 }],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(DebugExit)
  }),
}
