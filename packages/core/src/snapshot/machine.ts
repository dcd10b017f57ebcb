// Machine.snapshot: a paused machine into a snapshot directory (files.ts). Everything that could
// refuse is checked before anything is written: a vCPU or VM whose state the hypervisor cannot
// read, a component that holds state but cannot save it. Then the components are quiesced and
// saved (drivers.ts), the vCPUs read (MP state first, events last: the hypervisor's getState), the
// VM's irqchip, PIT and clock read, and RAM written; the machine stays paused whatever happens.
import { readFileSync } from 'node:fs'
import { isSnapshottable } from '../component/capabilities.js'
import type { RamMapping, Vcpu, VirtualMachine } from '../hypervisor.js'
import { saveComponentStates } from '../machine/drivers.js'
import type { BuiltComponent, MachineState } from '../machine/types.js'
import { SnapshotError } from './codec.js'
import { type SnapshotHeader, writeSnapshot } from './files.js'
import type { MachineSnapshotState } from './state.js'

export interface SnapshotSource {
  readonly state: MachineState
  /** The effective manifest, every resource pinned (printEffective). */
  readonly manifest: string
  readonly vm: VirtualMachine
  readonly vcpus: readonly Vcpu[]
  readonly components: readonly BuiltComponent[]
  readonly ram: RamMapping
  /**
   * The guest clock (KVM_GET_CLOCK) as Machine.pause held it. Saved instead of a fresh read: the
   * clock runs on while the machine sits paused, and a snapshot taken later would otherwise make
   * the restored guest's clock jump by the time spent paused and writing the snapshot.
   */
  readonly pausedClock?: Uint8Array
}

/** This host's CPU model as /proc/cpuinfo names it ('unknown' where it does not). */
export function hostCpuModel(): string {
  try {
    return /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Why `m` cannot be snapshotted, or an empty list. */
export function snapshotRefusals(m: SnapshotSource): string[] {
  const out: string[] = []
  if (m.state !== 'paused') out.push(`the machine is ${m.state}; pause it first`)
  if (m.vcpus.some((v) => !v.x86)) out.push('the hypervisor cannot read x86 vCPU state (no vcpu.x86)')
  if (!m.vm.x86) out.push('the hypervisor cannot read x86 VM state (no vm.x86)')
  const cannot = m.components.filter((c) => !isSnapshottable(c.instance)).map((c) => `${c.id} (${c.type})`)
  if (cannot.length > 0)
    out.push(`these components cannot save their state (not Snapshottable): ${cannot.join(', ')}`)
  return out
}

export async function snapshotMachine(m: SnapshotSource, dir: string): Promise<SnapshotHeader> {
  const refusals = snapshotRefusals(m)
  if (refusals.length > 0) throw new SnapshotError(dir, `cannot snapshot: ${refusals.join('; ')}`)
  const components = Object.fromEntries(await saveComponentStates(m.components))
  const vcpus = m.vcpus.map((v, i) => {
    try {
      return v.x86!.getState()
    } catch (e) {
      // KVM_GET_LAPIC fails without an in-kernel irqchip: say what the manifest needs.
      const hint = /LAPIC/.test(String(e))
        ? '; a machine without `irqchip: true` has no in-kernel LAPIC whose state could be saved'
        : ''
      throw new SnapshotError(dir, `cannot snapshot: vCPU ${i}: ${(e as Error).message}${hint}`, { cause: e })
    }
  })
  const x86 = m.vm.x86!
  const vm = {
    ...(x86.irqchip ? { irqchip: x86.irqchip.get() } : {}),
    ...(x86.pit ? { pit: x86.pit.get() } : {}),
    ...(x86.clock ? { clock: m.pausedClock ?? x86.clock.get() } : {}),
  }
  const ramBytes = m.ram.buffers.reduce((n, b) => n + b.byteLength, 0)
  const state: MachineSnapshotState = {
    manifest: m.manifest,
    ramBytes,
    host: { cpuModel: hostCpuModel(), tscKhz: vcpus[0]?.tscKhz ?? 0 },
    vcpus,
    vm,
    components,
    disks: [],
  }
  return writeSnapshot(
    dir,
    state,
    m.ram.buffers.map((b) => new Uint8Array(b)),
  )
}
