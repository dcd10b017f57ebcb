// Firecracker's boot timer: one MMIO page; when the guest's init writes the byte 123 to it, the
// VMM records the time since `vmm run` started (Firecracker
// devices/pseudo/boot_timer.rs). Our init writes it with `devmem 0xc0000000 8 123`.
import { inject, injectable, type MachineControl, type MmioDevice, SavedState, Tokens } from '@vmm/core'

export const BOOT_TIMER_MAGIC = 123

export interface BootTimerConfig {
  /** Print "boot-timer: guest reached init after N ms" on stderr (the `device` machine event
   * named boot-time is always emitted). */
  log: boolean
}

@injectable()
export class BootTimer implements MmioDevice {
  /** Milliseconds from process start to the guest's write, once it happened. */
  bootMs: number | undefined
  private readonly listeners: ((ms: number) => void)[] = []

  constructor(
    @inject(Tokens.Config) private readonly config: BootTimerConfig,
    @inject(Tokens.MachineControl) private readonly machine: MachineControl,
    @inject(Tokens.Id) private readonly id: string,
  ) {}

  /** Calls `f(ms)` when the guest reports that it booted. */
  onBoot(f: (ms: number) => void): void {
    this.listeners.push(f)
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0)
  }

  // Snapshottable: whether the guest has reported its boot. A restored guest that booted before the
  // snapshot does not report it again (its init ran once), so the restored timer keeps the time the
  // original run measured, and a second write of the magic byte is ignored as before.
  quiesce(): void {}

  saveState(): { bootMs: number | null } {
    return { bootMs: this.bootMs ?? null }
  }

  restoreState(state: unknown): void {
    const s = new SavedState(this.id, state).only('bootMs')
    this.bootMs = s.isNull('bootMs') ? undefined : s.number('bootMs')
  }

  write(offset: number, data: Uint8Array): void {
    if (offset !== 0 || data[0] !== BOOT_TIMER_MAGIC || this.bootMs !== undefined) return
    // performance.now() counts from the start of this process, which is the start of `vmm run`.
    this.bootMs = performance.now()
    if (this.config.log)
      process.stderr.write(`boot-timer: guest reached init after ${this.bootMs.toFixed(1)} ms\n`)
    this.machine.report(this.id, 'boot-time', { ms: this.bootMs })
    for (const f of this.listeners) f(this.bootMs)
  }
}
