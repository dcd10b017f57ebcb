// A deliberately tiny 16-bit real-mode x86 interpreter for the test hypervisor: enough for test
// guests that move values around, loop, and talk to devices through ports and memory. Anything
// else stops with an 'internal-error' exit carrying the instruction bytes, as KVM reports an
// emulation failure (KVM_INTERNAL_ERROR_EMULATION).
//
// Supported: nop, hlt, cli, sti, cld, mov r8/r16 imm (B0-BF), mov ds/es, r16 (8E /r, mod 11),
// mov al/ax <-> [moffs16] (A0-A3), in/out with imm8 or dx (E4-E7, EC-EF), inc/dec r16 (40-4F),
// cmp al, imm8 (3C), jz/jnz rel8 (74/75), jmp rel8/rel16 (EB/E9).

import type { VcpuExit } from '../hypervisor.js'

/** How the CPU reaches memory and ports; the test vCPU routes unmapped memory to MMIO exits. */
export interface CpuBus {
  load(address: number, data: Uint8Array): void
  store(address: number, data: Uint8Array): void
  in(port: number, data: Uint8Array): void
  out(port: number, data: Uint8Array): void
}

const ZF = 1 << 6

export class RealModeCpu {
  /** ax cx dx bx sp bp si di */
  private readonly regs = new Uint16Array(8)
  ip = 0xfff0
  cs = 0xf000
  csBase = 0xffff0000
  ds = 0
  flags = 2
  private readonly fetchBuf = new Uint8Array(1)
  private readonly io1 = new Uint8Array(1)
  private readonly io2 = new Uint8Array(2)

  reg16(i: number): number {
    return this.regs[i]!
  }

  setReg16(i: number, v: number): void {
    this.regs[i] = v
  }

  /** 8-bit registers: al cl dl bl ah ch dh bh. */
  private reg8(i: number): number {
    return i < 4 ? this.regs[i]! & 0xff : this.regs[i - 4]! >> 8
  }

  private setReg8(i: number, v: number): void {
    if (i < 4) this.regs[i] = (this.regs[i]! & 0xff00) | v
    else this.regs[i - 4] = (this.regs[i - 4]! & 0xff) | (v << 8)
  }

  private fetch(bus: CpuBus): number {
    bus.load(this.csBase + this.ip, this.fetchBuf)
    this.ip = (this.ip + 1) & 0xffff
    return this.fetchBuf[0]!
  }

  private fetch16(bus: CpuBus): number {
    return this.fetch(bus) | (this.fetch(bus) << 8)
  }

  private setZf(value: number): void {
    this.flags = value === 0 ? this.flags | ZF : this.flags & ~ZF
  }

  private io(size: number, value?: number): Uint8Array {
    const buf = size === 1 ? this.io1 : this.io2
    if (value !== undefined) {
      buf[0] = value & 0xff
      if (size === 2) buf[1] = value >> 8
    }
    return buf
  }

  private ioIn(bus: CpuBus, port: number, size: number): void {
    const buf = this.io(size)
    bus.in(port, buf)
    if (size === 1) this.setReg8(0, buf[0]!)
    else this.regs[0] = buf[0]! | (buf[1]! << 8)
  }

  /** Executes one instruction; returns an exit for hlt and for what it cannot execute. */
  step(bus: CpuBus): VcpuExit | undefined {
    const start = this.ip
    const op = this.fetch(bus)
    if (op >= 0xb0 && op <= 0xb7) this.setReg8(op - 0xb0, this.fetch(bus))
    else if (op >= 0xb8 && op <= 0xbf) this.regs[op - 0xb8] = this.fetch16(bus)
    else if (op >= 0x40 && op <= 0x4f) {
      const r = op & 7
      this.regs[r] = this.regs[r]! + (op < 0x48 ? 1 : -1)
      this.setZf(this.regs[r]!)
    } else {
      switch (op) {
        case 0x90:
        case 0xfa:
        case 0xfb:
        case 0xfc:
          break
        case 0xf4:
          return { kind: 'hlt' }
        case 0x8e: {
          const modrm = this.fetch(bus)
          const sreg = (modrm >> 3) & 7
          if (modrm >> 6 !== 3 || (sreg !== 0 && sreg !== 3)) return this.unsupported(bus, start)
          if (sreg === 3) this.ds = this.regs[modrm & 7]!
          break
        }
        case 0xa0:
        case 0xa1:
        case 0xa2:
        case 0xa3: {
          const size = op & 1 ? 2 : 1
          const address = this.ds * 16 + this.fetch16(bus)
          if (op < 0xa2) {
            const buf = this.io(size)
            bus.load(address, buf)
            if (size === 1) this.setReg8(0, buf[0]!)
            else this.regs[0] = buf[0]! | (buf[1]! << 8)
          } else bus.store(address, this.io(size, size === 1 ? this.reg8(0) : this.regs[0]!))
          break
        }
        case 0xe4:
        case 0xe5:
          this.ioIn(bus, this.fetch(bus), op === 0xe4 ? 1 : 2)
          break
        case 0xec:
        case 0xed:
          this.ioIn(bus, this.regs[2]!, op === 0xec ? 1 : 2)
          break
        case 0xe6:
        case 0xe7: {
          const port = this.fetch(bus)
          bus.out(port, op === 0xe6 ? this.io(1, this.reg8(0)) : this.io(2, this.regs[0]!))
          break
        }
        case 0xee:
        case 0xef:
          bus.out(this.regs[2]!, op === 0xee ? this.io(1, this.reg8(0)) : this.io(2, this.regs[0]!))
          break
        case 0x3c:
          this.setZf((this.reg8(0) - this.fetch(bus)) & 0xff)
          break
        case 0x74:
        case 0x75: {
          const rel = (this.fetch(bus) << 24) >> 24
          if (((this.flags & ZF) !== 0) === (op === 0x74)) this.ip = (this.ip + rel) & 0xffff
          break
        }
        case 0xeb: {
          const rel = (this.fetch(bus) << 24) >> 24
          this.ip = (this.ip + rel) & 0xffff
          break
        }
        case 0xe9: {
          const rel = this.fetch16(bus)
          this.ip = (this.ip + rel) & 0xffff
          break
        }
        default:
          return this.unsupported(bus, start)
      }
    }
    return undefined
  }

  private unsupported(bus: CpuBus, start: number): VcpuExit {
    const bytes = new Uint8Array(15)
    for (let i = 0; i < 15; i++) bus.load(this.csBase + ((start + i) & 0xffff), bytes.subarray(i, i + 1))
    this.ip = start
    return { kind: 'internal-error', suberror: 1, instructionBytes: bytes, data: [] }
  }
}
