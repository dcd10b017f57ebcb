import type { PioDevice } from '../../bus/device.js'
import { SavedState } from '../../component/saved-state.js'
import { Tokens } from '../../component/tokens.js'
import { inject, injectable } from '../../third-party/inversify.js'

export interface DebugconConfig {
  output: 'stdout' | 'stderr' | 'none'
}

/**
 * Bochs/QEMU's debug console (isa-debugcon): bytes written to its port appear on the host, and
 * reading the port returns 0xe9 so a guest can detect it. The simplest way for a raw guest to print.
 */
@injectable()
export class Debugcon implements PioDevice {
  private readonly chunks: Uint8Array[] = []

  constructor(
    @inject(Tokens.Config) private readonly config: DebugconConfig,
    @inject(Tokens.Id) private readonly id: string,
  ) {}

  /** Everything the guest has written, as text. */
  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1')
  }

  read(_offset: number, data: Uint8Array): void {
    data.fill(0xe9)
  }

  // Snapshottable: the port has no state the guest can see (what was written already went out).
  quiesce(): void {}

  saveState(): Record<string, never> {
    return {}
  }

  restoreState(state: unknown): void {
    new SavedState(this.id, state).only()
  }

  write(_offset: number, data: Uint8Array): void {
    const bytes = data.slice() // `data` is borrowed from the exit page
    this.chunks.push(bytes)
    if (this.config.output !== 'none') process[this.config.output].write(bytes)
  }
}
