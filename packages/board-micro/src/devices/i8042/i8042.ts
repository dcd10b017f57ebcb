// The `i8042` component: the controller of ./device.ts on ports 0x60 (data) and 0x64 (status/command)
// and an interrupt line (ISA IRQ 1).
import {
  type Component,
  type ComponentResources,
  type ComponentType,
  ContainerModule,
  inject,
  injectable,
  type MachineControl,
  type PioDevice,
  SavedState,
  Tokens,
} from '@vmm/core'
import { CTRL_ALT_DEL, I8042Controller, type I8042State, POWER_KEY } from './device.js'

/** The component: ports 0x60 and 0x64 are one window of 5 ports (0x60-0x64). */
@injectable()
export class I8042 implements PioDevice, Component {
  readonly controller: I8042Controller

  constructor(
    @inject(Tokens.Resources) resources: ComponentResources,
    @inject(Tokens.MachineControl) machine: MachineControl,
    @inject(Tokens.Id) private readonly id: string,
  ) {
    this.controller = new I8042Controller(resources.irq('irq'), () =>
      machine.guestStopped('reset', 'guest reset through the i8042 (reboot)'),
    )
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0)
    if (offset === 0) data[0] = this.controller.readData()
    else if (offset === 4) data[0] = this.controller.readStatus()
    else data[0] = 0xff
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 0) this.controller.writeData(data[0]!)
    else if (offset === 4) this.controller.writeCommand(data[0]!)
  }

  /** Machine.pause: a key pressed meanwhile (the Power key of requestShutdown) waits for resume. */
  pause(): void {
    this.controller.hold(true)
  }

  resume(): void {
    this.controller.hold(false)
  }

  // Snapshottable: the controller has nothing in flight (every access completes at once).
  quiesce(): void {}

  saveState(): I8042State {
    return this.controller.saveState()
  }

  restoreState(state: unknown): void {
    this.controller.restoreState(new SavedState(this.id, state))
  }

  /** Delivers Ctrl-Alt-Del to the guest, as a user at the keyboard would. */
  sendCtrlAltDel(): void {
    this.controller.keyboard(CTRL_ALT_DEL)
  }

  /** Presses and releases the keyboard's Power key. */
  pressPowerKey(): void {
    this.controller.keyboard(POWER_KEY)
  }

  /**
   * A clean shutdown request (Machine.requestShutdown, `vmm run` on SIGTERM): the keyboard's Power
   * key, which a guest hears as KEY_POWER (systemd-logind and busybox acpid power off on it; the
   * default guest runs acpid). Ctrl-Alt-Del (sendCtrlAltDel) would reboot instead, and a guest
   * kernel without a VT (the default guest's) does not act on it at all.
   */
  requestShutdown(): boolean {
    this.pressPowerKey()
    return true
  }
}

export const i8042Type: ComponentType = {
  name: 'i8042',
  description:
    'the i8042 keyboard controller: guest reset (reboot), Ctrl-Alt-Del and the Power key from the host',
  schema: { properties: {} },
  resources: () => [
    { kind: 'pio', name: 'ports', size: 5 },
    { kind: 'irq', name: 'irq' },
  ],
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(I8042)
  }),
}
