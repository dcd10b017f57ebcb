import { readFileSync, statSync } from 'node:fs'
import { guestAddress } from '../address.js'
import {
  type Component,
  type ComponentType,
  ConfigError,
  type LoadContext,
} from '../component/component-type.js'
import { Tokens } from '../component/tokens.js'
import { addressSchema, pathSchema } from '../manifest/schema.js'
import { ContainerModule, inject, injectable } from '../vendor/inversify.js'

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
    memory.write(guestAddress(address), readFileSync(file))
    const vcpu = vcpus[index]
    if (!vcpu) throw new Error(`${this.id}: the machine has no vCPU ${index}`)
    const entry = this.config.entry ?? { cs: address >>> 4, ip: address & 0xf }
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
}

export const rawImageType: ComponentType<RawImageConfig> = {
  name: 'raw-image',
  description: 'a raw binary loaded at a guest address and entered in 16-bit real mode',
  schema: {
    properties: {
      file: { ...pathSchema, description: 'the binary, relative to the manifest' },
      address: { ...addressSchema, description: 'guest physical load address' },
      entry: {
        type: 'object',
        additionalProperties: false,
        required: ['cs', 'ip'],
        properties: {
          cs: { type: 'integer', minimum: 0, maximum: 0xffff },
          ip: { type: 'integer', minimum: 0, maximum: 0xffff },
        },
      },
      vcpu: { type: 'integer', minimum: 0, default: 0 },
    },
    required: ['file', 'address'],
  },
  resources(config) {
    let size: number
    try {
      size = statSync(config.file).size
    } catch (e) {
      throw new ConfigError(
        'file',
        `cannot read ${config.file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
      )
    }
    if (config.address >= 0x10_0000 + 0xfff0)
      throw new ConfigError('address', 'a real-mode guest must be loaded below 0x10fff0')
    return [{ kind: 'ram', name: 'image', base: config.address, size }]
  },
  module: new ContainerModule(({ bind }) => {
    bind(Tokens.Component).to(RawImage)
  }),
}
