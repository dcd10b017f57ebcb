// Machine.restore's steps after the machine is realized from the snapshot's pinned manifest with
// RAM mapped from its memory file: the host checks, then the state in docs/snapshot.md's order —
// every vCPU, then the VM (PIC, IOAPIC, PIT, clock), the devices last (a device that raised an
// interrupt while restoring would be overwritten by a later irqchip restore). Everything here runs
// before any vCPU does; a failure names what and where.
import type { ComponentRegistry } from '../component/registry.js'
import type { Vcpu, VirtualMachine } from '../hypervisor.js'
import { restoreComponentStates } from '../machine/drivers.js'
import type { BuiltComponent, MachineOptions } from '../machine/types.js'
import { type ResolvedManifest, resolveManifest } from '../manifest/resolve.js'
import { manifestFromObject } from '../manifest/source.js'
import { parseDocument } from '../third-party/yaml.js'
import { SnapshotError } from './codec.js'
import { readSnapshot } from './files.js'
import { hostCpuModel } from './machine.js'
import { applyOverrides, type ComponentOverride, describeOverride } from './overrides.js'
import { checkState, hostMismatches, type MachineSnapshotState } from './state.js'

export interface LoadedSnapshot {
  dir: string
  state: MachineSnapshotState
  memoryFile: string
  memoryBytes: number
  /** The pinned manifest as data. */
  manifest: Record<string, unknown>
}

/** Reads and checks snapshot directory `dir` (files.ts, state.ts); nothing is built yet. */
export function loadSnapshot(dir: string): LoadedSnapshot {
  const read = readSnapshot(dir)
  const stateFile = `${dir}/state.json`
  const state = checkState(read.state, stateFile)
  const doc = parseDocument(state.manifest)
  if (doc.errors.length > 0 || typeof doc.toJS() !== 'object' || doc.toJS() === null)
    throw new SnapshotError(
      stateFile,
      `$.manifest: not a YAML manifest (${doc.errors[0]?.message ?? 'empty'})`,
    )
  if (read.memoryBytes < state.ramBytes)
    throw new SnapshotError(
      read.memoryFile,
      `holds ${read.memoryBytes} bytes, guest RAM is ${state.ramBytes}`,
    )
  return { dir, state, memoryFile: read.memoryFile, memoryBytes: read.memoryBytes, manifest: doc.toJS() }
}

/** Machine.restore's options: the machine's, and the clone's own host resources. */
export interface RestoreOptions extends MachineOptions {
  /**
   * Component properties to change from the snapshot's manifest (overrides.ts): the TAP, disk,
   * vsock socket and CID, MAC of this clone. Validated by each component type's schema.
   */
  readonly overrides?: readonly ComponentOverride[]
}

/**
 * The snapshot's pinned manifest with `overrides` applied, resolved (plugins loaded, schemas
 * checked). An error caused by an override says so and names it.
 */
export async function resolveRestoredManifest(
  snap: LoadedSnapshot,
  overrides: readonly ComponentOverride[],
  registry: ComponentRegistry,
): Promise<ResolvedManifest> {
  const where = `${snap.dir}/state.json ($.manifest)`
  const data = applyOverrides(snap.manifest, overrides)
  try {
    // Restoring: the loaders' kernel and initrd are not read (a restore loads nothing), which
    // saves reading and inflating the initramfs at every restore, and a snapshot outlives them.
    return await resolveManifest(manifestFromObject(data, where), registry, { restoring: true })
  } catch (e) {
    if (overrides.length === 0) throw e
    throw new Error(
      `the snapshot's manifest with the overrides ${overrides.map(describeOverride).join(', ')}: ${(e as Error).message}`,
      { cause: e },
    )
  }
}

export interface RestoreTarget {
  readonly vm: VirtualMachine
  readonly vcpus: readonly Vcpu[]
  readonly components: readonly BuiltComponent[]
}

/** Puts the snapshot's state into a realized, never-run machine. */
export async function restoreInto(m: RestoreTarget, snap: LoadedSnapshot): Promise<void> {
  const { state, dir } = snap
  const fail = (what: string): never => {
    throw new SnapshotError(dir, `cannot restore: ${what}`)
  }
  if (m.vcpus.length !== state.vcpus.length)
    fail(`the snapshot has ${state.vcpus.length} vCPUs, the machine ${m.vcpus.length}`)
  const x86 = m.vcpus[0]?.x86
  if (!x86 || !m.vm.x86) fail('the hypervisor cannot set x86 vCPU and VM state')
  const mismatches = hostMismatches(state, {
    cpuModel: hostCpuModel(),
    tscKhz: x86!.tscKhz(),
    memoryBytes: snap.memoryBytes,
  })
  if (mismatches.length > 0) fail(mismatches.join('; '))
  for (const [i, v] of m.vcpus.entries()) {
    try {
      v.x86!.setState(state.vcpus[i]!)
    } catch (e) {
      fail(`vCPU ${i}: ${(e as Error).message}`)
    }
  }
  const vm = m.vm.x86!
  for (const part of ['irqchip', 'pit', 'clock'] as const) {
    const saved = state.vm[part]
    if (!saved) continue
    const target = vm[part]
    if (!target) fail(`the snapshot has VM ${part} state, this VM has no ${part}`)
    try {
      target!.set(saved)
    } catch (e) {
      fail(`VM ${part}: ${(e as Error).message}`)
    }
  }
  try {
    await restoreComponentStates(m.components, new Map(Object.entries(state.components)))
  } catch (e) {
    fail((e as Error).message)
  }
}
