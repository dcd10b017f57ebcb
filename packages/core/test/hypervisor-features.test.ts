// The test hypervisor's optional parts (core's vm.notifiers and vm.msiRouting): off unless asked,
// and when asked, doorbells served in-process like KVM's ioeventfd (a matching guest write never
// reaches the exit handler; the callback runs on the event loop) and triggers and routes recorded.
import { describe, expect, it } from 'vitest'
import type { ExitHandler, GuestAddress } from '../src/index.js'
import { TestHypervisor, type TestVm } from '../src/testing/index.js'

const CODE = 0x1000

/** A real-mode guest at 0:CODE with 64 KiB of RAM; resolves with the handler's trapped writes. */
async function runGuest(vm: TestVm, code: number[]): Promise<string[]> {
  const ram = vm.mapRam(0x10000)
  vm.setMemorySlot({
    slot: 0,
    guestAddress: 0 as GuestAddress,
    size: 0x10000,
    mapping: ram,
    mappingOffset: 0,
    readOnly: false,
  })
  new Uint8Array(ram.buffers[0]!).set(code, CODE)
  const vcpu = vm.createVcpu(0)
  const sregs = vcpu.getSregs()
  vcpu.setSregs({ ...sregs, cs: { ...sregs.cs, selector: 0, base: 0n } })
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(CODE) })
  const trapped: string[] = []
  const hex = (d: Uint8Array) => [...d].map((b) => b.toString(16)).join(',')
  const handler: ExitHandler = {
    pioIn: () => {},
    pioOut: (port, data) => trapped.push(`out 0x${port.toString(16)} ${hex(data)}`),
    mmioRead: () => {},
    mmioWrite: (address, data) => trapped.push(`write 0x${address.toString(16)} ${hex(data)}`),
    onExit: (exit) => (exit.kind === 'hlt' ? 'stop' : 'resume'),
  }
  await vcpu.run(handler)
  return trapped
}

// mov ax, 0xd000; mov ds, ax; mov ax, 1; mov [0x50], ax; mov ax, 2; mov [0x50], ax; out 0x10, al; hlt
const GUEST = [
  0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xb8, 0x01, 0x00, 0xa3, 0x50, 0x00, 0xb8, 0x02, 0x00, 0xa3, 0x50, 0x00, 0xe6,
  0x10, 0xf4,
]

describe('test hypervisor optional parts', () => {
  it('offers none by default, so device tests keep their trapped paths', async () => {
    const vm = new TestHypervisor().createVm()
    expect(vm.notifiers).toBeUndefined()
    expect(vm.msiRouting).toBeUndefined()
    expect(vm.x86).toBeUndefined()
    expect(vm.dirtyLog).toBeUndefined()
    expect(vm.bootPolicy).toBeUndefined()
    expect(vm.createVcpu(0).x86).toBeUndefined()
    vm.dispose()
  })

  it('takes writes that match a doorbell off the exit path and calls back on the event loop', async () => {
    const vm = new TestHypervisor({ notifiers: true }).createVm()
    const rung: string[] = []
    const mmio = vm.notifiers!.doorbell({ address: 0xd0050, length: 2, datamatch: 1n }, () =>
      rung.push('mmio'),
    )
    const pio = vm.notifiers!.doorbell({ address: 0x10, length: 1, space: 'pio' }, () => rung.push('pio'))
    expect(mmio).toBeDefined()
    expect(pio).toBeDefined()
    // KVM answers EEXIST for a second ioeventfd on the same address and match.
    expect(vm.notifiers!.doorbell({ address: 0xd0050, length: 2, datamatch: 1n }, () => {})).toBeUndefined()
    const trapped = await runGuest(vm, GUEST)
    // The write of 2 does not match the datamatch of 1: it traps as before.
    expect(trapped).toEqual(['write 0xd0050 2,0'])
    expect(rung).toEqual([]) // not synchronously inside the vCPU's exit
    await new Promise((r) => setImmediate(r))
    expect(rung.sort()).toEqual(['mmio', 'pio'])
    mmio!.dispose()
    vm.dispose()
  })

  it('traps again once a doorbell is disposed', async () => {
    const vm = new TestHypervisor({ notifiers: true }).createVm()
    vm.notifiers!.doorbell({ address: 0x10, length: 1, space: 'pio' }, () => {})!.dispose()
    expect(await runGuest(vm, GUEST)).toEqual(['write 0xd0050 1,0', 'write 0xd0050 2,0', 'out 0x10 2'])
    vm.dispose()
  })

  it('records interrupt triggers until disposed, and the routing tables installed', () => {
    const vm = new TestHypervisor({ notifiers: true, msiRouting: true }).createVm()
    const t = vm.notifiers!.interrupt(24)!
    t.trigger()
    t.trigger()
    t.dispose()
    t.trigger()
    expect(vm.log.triggered).toEqual([24, 24])
    vm.msiRouting!.setRoutes([{ gsi: 24, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x41 }])
    expect(vm.log.gsiRoutes).toEqual([
      [{ gsi: 24, type: 'msi', addressLo: 0xfee00000, addressHi: 0, data: 0x41 }],
    ])
    vm.dispose()
  })
})
