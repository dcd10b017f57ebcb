import { readFileSync } from 'node:fs'
import { guestAddress, hex } from '../../address.js'
import type { Component, LoadContext } from '../../component/component-type.js'
import { Tokens } from '../../component/tokens.js'
import { inject, injectable } from '../../third-party/inversify.js'

export interface RawImageConfig {
  /** The binary, relative to the manifest. */
  file: string
  /** Guest physical load address. */
  address: number
  /** Real-mode entry point; defaults to the load address as cs = address >> 4, ip = address & 0xf. */
  entry?: { cs: number; ip: number }
  /** Which vCPU starts there. */
  vcpu: number
}

/**
 * A raw binary guest: copied to `address` and entered in 16-bit real mode at cs:ip with every data
 * segment equal to cs (like a DOS .COM program). What `vmm run` executes until boards exist; tests
 * and the boot benchmark use it.
 */
@injectable()
export class RawImage implements Component {
  constructor(
    @inject(Tokens.Config) private readonly config: RawImageConfig,
    @inject(Tokens.Id) private readonly id: string,
  ) {}

  load({ memory, vcpus }: LoadContext): void {
    const { file, address, vcpu: index } = this.config
    const bytes = readFileSync(file)
    const vcpu = vcpus[index]
    if (!vcpu) throw new Error(`${this.id}: the machine has no vCPU ${index}`)
    const entry = this.config.entry ?? { cs: address >>> 4, ip: address & 0xf }
    // A raw image has no header: what it promises is its own size at `address` and an entry
    // inside it. Both are checked before anything is written, naming the file.
    if (bytes.length === 0) throw new Error(`${this.id}: ${file} is empty`)
    if (!memory.isMapped(guestAddress(address), bytes.length))
      throw new Error(
        `${this.id}: ${file} (${bytes.length} bytes) at ${hex(address)} runs past guest RAM: [${hex(address)}, ${hex(address + bytes.length)}) is not all RAM`,
      )
    const linear = entry.cs * 16 + entry.ip
    if (linear < address || linear >= address + bytes.length)
      throw new Error(
        `${this.id}: the entry ${hex(entry.cs)}:${hex(entry.ip)} (${hex(linear)}) is outside ${file}, loaded at [${hex(address)}, ${hex(address + bytes.length)})`,
      )
    memory.write(guestAddress(address), bytes)
    const sregs = vcpu.getSregs()
    for (const seg of [sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss]) {
      seg.selector = entry.cs
      seg.base = BigInt(entry.cs * 16)
      seg.limit = 0xffff
    }
    sregs.cr0 &= ~1n // real mode
    vcpu.setSregs(sregs)
    vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(entry.ip), rflags: 2n, rsp: 0n })
  }

  // Snapshottable: what a loader did lives in guest RAM and the vCPU registers, both in the
  // snapshot already; it has nothing in flight and no state of its own.
  quiesce(): void {}
  saveState(): Record<string, never> {
    return {}
  }
  restoreState(state: unknown): void {
    if (typeof state !== 'object' || state === null || Object.keys(state).length > 0)
      throw new Error(`${this.id}: a raw-image has no state to restore, got ${JSON.stringify(state)}`)
  }
}
