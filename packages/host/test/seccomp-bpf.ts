// A classic-BPF interpreter for seccomp programs, the subset our compiler emits (and a check that
// it emits nothing else): what the kernel's seccomp_run_filters would answer for one call.
// include/uapi/linux/filter.h; Documentation/networking/filter.rst ("BPF engine and instruction set").

export interface Call {
  nr: number
  arch?: number
  ip?: bigint
  args?: readonly bigint[]
}

/** The 64-byte struct seccomp_data the kernel hands a filter. */
function seccompData(call: Call): DataView {
  const data = new DataView(new ArrayBuffer(64))
  data.setUint32(0, call.nr >>> 0, true)
  data.setUint32(4, call.arch ?? 0xc000003e, true)
  data.setBigUint64(8, call.ip ?? 0n, true)
  for (let i = 0; i < 6; i++) data.setBigUint64(16 + 8 * i, BigInt.asUintN(64, call.args?.[i] ?? 0n), true)
  return data
}

/** Runs `program` (struct sock_filter[]) on `call`; returns the filter's 32-bit answer. */
export function runFilter(program: Uint8Array, call: Call): number {
  const insns = new DataView(program.buffer, program.byteOffset, program.byteLength)
  const data = seccompData(call)
  const n = program.byteLength / 8
  let a = 0
  for (let pc = 0, steps = 0; pc < n; pc++, steps++) {
    if (steps > 100_000) throw new Error('runaway program')
    const code = insns.getUint16(pc * 8, true)
    const jt = insns.getUint8(pc * 8 + 2)
    const jf = insns.getUint8(pc * 8 + 3)
    const k = insns.getUint32(pc * 8 + 4, true)
    switch (code) {
      case 0x20: // BPF_LD | BPF_W | BPF_ABS
        if (k % 4 !== 0 || k + 4 > 64) throw new Error(`pc ${pc}: load out of seccomp_data at ${k}`)
        a = data.getUint32(k, true)
        break
      case 0x54: // BPF_ALU | BPF_AND | BPF_K
        a = (a & k) >>> 0
        break
      case 0x05: // BPF_JMP | BPF_JA
        pc += k
        break
      case 0x15: // BPF_JMP | BPF_JEQ | BPF_K
        pc += a === k ? jt : jf
        break
      case 0x35: // BPF_JMP | BPF_JGE | BPF_K
        pc += a >= k ? jt : jf
        break
      case 0x45: // BPF_JMP | BPF_JSET | BPF_K
        pc += (a & k) !== 0 ? jt : jf
        break
      case 0x06: // BPF_RET | BPF_K
        return k >>> 0
      default:
        throw new Error(`pc ${pc}: opcode 0x${code.toString(16)} is not one the compiler emits`)
    }
    if (pc + 1 > n) throw new Error(`pc ${pc}: jump past the end`)
  }
  throw new Error('the program fell off its end without a return')
}
