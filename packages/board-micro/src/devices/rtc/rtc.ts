// The `cmos-rtc` component: the MC146818A of ./device.ts on two I/O ports (0x70-0x71 on a PC)
// and an interrupt line (ISA IRQ 8). Linux's rtc-cmos finds it through ACPI (PNP0B00, which the
// acpi component writes when it is given the RTC) or, without ACPI, at the PC's fixed address, and
// sets the system clock from it at boot (CONFIG_RTC_HCTOSYS).
import {
  type Component,
  type ComponentResources,
  type ComponentType,
  ConfigError,
  ContainerModule,
  inject,
  injectable,
  type PioDevice,
  SavedState,
  Tokens,
} from '@vmm/core'
import { Mc146818 } from './device.js'
import { type RtcState, readRtcState } from './state.js'

export interface CmosRtcConfig {
  /**
   * What the clock shows at power-on: `utc` (the host's time), `localtime` (the host's time in
   * its time zone's fields, what Windows guests expect), or a date and time (ISO 8601, e.g.
   * `2026-01-01T00:00:00Z`) from which the clock runs.
   */
  base: string
}

/** The guest clock's time at power-on, in ms since the epoch (UTC fields), for a `base` value. */
export function rtcStartMs(base: string, now = Date.now()): number | undefined {
  if (base === 'utc') return undefined
  if (base === 'localtime') return now - new Date(now).getTimezoneOffset() * 60_000
  const ms = Date.parse(base)
  if (!/^\d{4}-\d{2}-\d{2}(T|$)/.test(base) || Number.isNaN(ms))
    throw new ConfigError(
      'base',
      `"${base}" is not utc, localtime or an ISO 8601 date (2026-01-01T00:00:00Z)`,
    )
  return ms
}

@injectable()
export class CmosRtc implements PioDevice, Component {
  readonly chip: Mc146818
  /** The index port (the data port follows it) and the GSI, for firmware tables that describe the RTC. */
  readonly port: number
  readonly irq: number

  constructor(
    @inject(Tokens.Config) config: CmosRtcConfig,
    @inject(Tokens.Resources) resources: ComponentResources,
    @inject(Tokens.Id) private readonly id: string,
  ) {
    const line = resources.irq('irq')
    this.chip = new Mc146818(line, rtcStartMs(config.base))
    this.port = resources.window('ports').base
    this.irq = line.irq
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0)
    data[0] = offset === 0 ? this.chip.readIndex() : this.chip.readData()
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 0) this.chip.writeIndex(data[0]!)
    else this.chip.writeData(data[0]!)
  }

  pause(): void {
    this.chip.pause()
  }

  // Snapshottable: registers, CMOS RAM and the clock's offset from the host's wall clock.
  quiesce(): void {
    this.chip.pause()
  }

  saveState(): RtcState {
    return this.chip.saveState()
  }

  restoreState(state: unknown): void {
    this.chip.restoreState(readRtcState(new SavedState(this.id, state)))
  }

  resume(): void {
    this.chip.resume()
  }

  stop(): void {
    this.chip.pause()
  }

  dispose(): void {
    this.chip.pause()
  }
}

export const cmosRtcType: ComponentType<CmosRtcConfig> = {
  name: 'cmos-rtc',
  description:
    "the PC's CMOS real-time clock (MC146818A): wall-clock time, alarm and periodic interrupts, CMOS RAM",
  schema: {
    properties: {
      base: {
        type: 'string',
        default: 'utc',
        description:
          'the time at power-on: utc (the host clock), localtime, or an ISO 8601 date such as 2026-01-01T00:00:00Z',
      },
    },
  },
  resources: (config) => {
    rtcStartMs(config.base) // blame a bad base at validation, before the machine is built
    return [
      { kind: 'pio', name: 'ports', size: 2 },
      { kind: 'irq', name: 'irq' },
    ]
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(CmosRtc)
  }),
}
