// snapshotMachine over fakes of the hypervisor parts (the real /dev/kvm path is in
// packages/kvm/test/snapshot.kvm.test.ts): refusals come before anything is written, components are
// quiesced before they are saved, and what is written reads back as a checked state.
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { checkState, readSnapshot, type SnapshotSource, snapshotMachine } from '../src/index.js'

let root: string
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snapm-'))
})
afterEach(() => fs.rmSync(root, { recursive: true, force: true }))

const regs = Object.fromEntries(
  [
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
  ].map((r) => [r, 1n]),
)
const sregs = Object.fromEntries(['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'].map((r) => [r, 0n]))

function source(
  components: SnapshotSource['components'],
  state: SnapshotSource['state'] = 'paused',
): SnapshotSource {
  const ram = new ArrayBuffer(8192)
  new Uint8Array(ram)[100] = 9
  return {
    state,
    manifest: 'machine: {memory: 8192}\n',
    vm: { x86: { pit: { get: () => new Uint8Array([4]), set() {} } } } as unknown as SnapshotSource['vm'],
    vcpus: [
      {
        x86: {
          getState: () => ({
            regs,
            sregs,
            fpu: {},
            lapic: new Uint8Array(1024),
            msrs: [],
            mpState: 0,
            events: {},
            tscKhz: 1000,
          }),
        },
      },
    ] as unknown as SnapshotSource['vcpus'],
    components,
    ram: { buffers: [ram], chunkSize: 8192 },
  }
}

const comp = (id: string, instance: object) =>
  ({ id, type: 't', instance }) as SnapshotSource['components'][number]

describe('snapshotMachine', () => {
  it('quiesces, then saves every component, the vCPUs, the VM and RAM', async () => {
    const log: string[] = []
    const dev = {
      quiesce: () => log.push('quiesce'),
      saveState: () => {
        log.push('save')
        return { lcr: 3 }
      },
      restoreState() {},
    }
    const dir = path.join(root, 'snap')
    await snapshotMachine(source([comp('uart', dev)]), dir)
    expect(log).toEqual(['quiesce', 'save'])
    const read = readSnapshot(dir)
    const s = checkState(read.state, 'state.json')
    expect(s.components).toEqual({ uart: { lcr: 3 } })
    expect(s.vm.pit).toEqual(new Uint8Array([4]))
    expect(s.host.tscKhz).toBe(1000)
    expect(fs.readFileSync(read.memoryFile)[100]).toBe(9)
  })

  it('refuses, naming why, before writing anything: not paused, a component that cannot save', async () => {
    const dir = path.join(root, 'snap')
    await expect(snapshotMachine(source([comp('blk0', {})], 'running'), dir)).rejects.toThrow(
      /cannot snapshot: the machine is running; pause it first; these components cannot save their state \(not Snapshottable\): blk0 \(t\)/,
    )
    expect(fs.readdirSync(root)).toEqual([])
  })
})
