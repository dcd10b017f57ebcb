// What state.json holds, and the check that a decoded one has that shape before anything of it
// reaches a vCPU or a device: restored state is untrusted input, checked like a guest write.
import type { X86VcpuState } from '../hypervisor-features.js'
import { SnapshotError } from './codec.js'

/** A backing file as it was when the snapshot was taken, to refuse a restore onto a changed one. */
export interface FileFingerprint {
  path: string
  size: number
  mtimeMs: number
  ino: number
}

export interface MachineSnapshotState {
  /** The effective manifest as YAML, every allocated resource pinned (printEffective). */
  manifest: string
  /** Guest RAM in bytes (the memory file must hold at least this much). */
  ramBytes: number
  /** The host the snapshot was taken on, for the restore's checks. */
  host: { cpuModel: string; tscKhz: number }
  vcpus: X86VcpuState[]
  vm: { irqchip?: Uint8Array; pit?: Uint8Array; clock?: Uint8Array }
  components: Record<string, unknown>
  disks: FileFingerprint[]
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)
const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff

/** Checks the decoded state's shape; throws a SnapshotError naming the first field that is wrong. */
export function checkState(v: unknown, file: string): MachineSnapshotState {
  const fail = (at: string, what: string): never => {
    throw new SnapshotError(file, `${at}: ${what}`)
  }
  if (!isObj(v)) return fail('$', 'the state must be an object')
  if (typeof v.manifest !== 'string') fail('$.manifest', 'must be the pinned manifest (YAML text)')
  if (!Number.isSafeInteger(v.ramBytes) || (v.ramBytes as number) <= 0)
    fail('$.ramBytes', 'must be a positive integer')
  const host = v.host
  if (!isObj(host) || typeof host.cpuModel !== 'string' || !isU32(host.tscKhz))
    fail('$.host', 'must be {cpuModel: string, tscKhz: integer}')
  if (!Array.isArray(v.vcpus) || v.vcpus.length === 0) fail('$.vcpus', 'must be a non-empty array')
  for (const [i, c] of (v.vcpus as unknown[]).entries()) checkVcpu(c, `$.vcpus[${i}]`, fail)
  if (!isObj(v.vm)) fail('$.vm', 'must be an object')
  for (const k of ['irqchip', 'pit', 'clock'])
    if (
      (v.vm as Record<string, unknown>)[k] !== undefined &&
      !((v.vm as Record<string, unknown>)[k] instanceof Uint8Array)
    )
      fail(`$.vm.${k}`, 'must be bytes')
  if (!isObj(v.components)) fail('$.components', 'must be an object keyed by component id')
  if (!Array.isArray(v.disks)) fail('$.disks', 'must be an array')
  ;(v.disks as unknown[]).forEach((d, i) => {
    if (
      !isObj(d) ||
      typeof d.path !== 'string' ||
      !Number.isSafeInteger(d.size) ||
      typeof d.mtimeMs !== 'number' ||
      !Number.isSafeInteger(d.ino)
    )
      fail(`$.disks[${i}]`, 'must be {path, size, mtimeMs, ino}')
  })
  return v as unknown as MachineSnapshotState
}

const REGS = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
]
const SREGS_U64 = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base']

function checkVcpu(c: unknown, at: string, fail: (at: string, what: string) => never): void {
  if (!isObj(c)) fail(at, 'must be an object')
  const o = c as Record<string, unknown>
  if (!isObj(o.regs)) fail(`${at}.regs`, 'must be an object')
  for (const r of REGS)
    if (typeof (o.regs as Record<string, unknown>)[r] !== 'bigint')
      fail(`${at}.regs.${r}`, 'must be a $bigint')
  if (!isObj(o.sregs)) fail(`${at}.sregs`, 'must be an object')
  for (const r of SREGS_U64)
    if (typeof (o.sregs as Record<string, unknown>)[r] !== 'bigint')
      fail(`${at}.sregs.${r}`, 'must be a $bigint')
  if (!(o.lapic instanceof Uint8Array) || o.lapic.length !== 1024) fail(`${at}.lapic`, 'must be 1024 bytes')
  if (!isU32(o.mpState) || (o.mpState as number) > 9)
    fail(`${at}.mpState`, 'must be a KVM_MP_STATE_* value (0-9)')
  if (!Array.isArray(o.msrs)) fail(`${at}.msrs`, 'must be an array')
  ;(o.msrs as unknown[]).forEach((m, i) => {
    if (!isObj(m) || !isU32(m.index) || typeof m.data !== 'bigint')
      fail(`${at}.msrs[${i}]`, 'must be {index, data: $bigint}')
  })
  if (!isObj(o.events)) fail(`${at}.events`, 'must be an object')
  if (!isObj(o.fpu)) fail(`${at}.fpu`, 'must be an object')
  for (const k of ['xsave', 'xcrs', 'debugRegs'])
    if (o[k] !== undefined && !(o[k] instanceof Uint8Array)) fail(`${at}.${k}`, 'must be bytes')
  if (o.tscKhz !== undefined && !isU32(o.tscKhz)) fail(`${at}.tscKhz`, 'must be an integer')
}

/** Differences of more than this between the saved and the host's TSC frequency refuse a restore (Firecracker's 250 ppm). */
export const TSC_TOLERANCE_PPM = 250

/**
 * What refuses a restore on this host: another CPU model, a TSC frequency off by more than
 * TSC_TOLERANCE_PPM, a memory file shorter than RAM. Returns the reasons (empty: it fits).
 */
export function hostMismatches(
  state: MachineSnapshotState,
  here: { cpuModel: string; tscKhz: number; memoryBytes: number },
): string[] {
  const out: string[] = []
  if (state.host.cpuModel !== here.cpuModel)
    out.push(`taken on CPU "${state.host.cpuModel}", this host has "${here.cpuModel}"`)
  const ppm = (Math.abs(state.host.tscKhz - here.tscKhz) / state.host.tscKhz) * 1e6
  if (ppm > TSC_TOLERANCE_PPM)
    out.push(
      `taken with a TSC of ${state.host.tscKhz} kHz, this host's is ${here.tscKhz} kHz (${Math.round(ppm)} ppm apart)`,
    )
  if (here.memoryBytes < state.ramBytes)
    out.push(`the memory file holds ${here.memoryBytes} bytes, guest RAM is ${state.ramBytes}`)
  return out
}
