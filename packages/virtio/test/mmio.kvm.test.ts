// virtio-rng and virtio-blk over the real virtio-mmio transport on /dev/kvm, driven by a tiny
// 32-bit guest driver written for this test (Linux cannot boot on our hosts yet). The guest sets up
// a split queue per device through the MMIO registers, posts requests, notifies, polls the used
// ring and reports through port writes. virtio-rng uses the plain MMIO-exit path for both doorbell
// and interrupt; virtio-blk uses KVM ioeventfd for its doorbell and irqfd for its interrupt.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FlatMemory, guestAddress, IrqChipLine, RamBacking } from '@vmm/core'
import { type ExitHandler, Kvm, KvmVirtualMachine, type Vcpu } from '@vmm/kvm'
import { assemble } from '@vmm/kvm/testing'
import { afterAll, describe, expect, it } from 'vitest'
import { BlockDevice } from '../src/devices/block/device.js'
import { RngDevice } from '../src/devices/rng/device.js'
import { acceleratorFor, type VirtioAccelerator } from '../src/mmio/accelerator.js'
import { VirtioMmioTransport } from '../src/mmio/transport.js'

const kvmUnavailable = Kvm.unavailableReason()
if (kvmUnavailable) console.warn(`[virtio kvm tests skipped] ${kvmUnavailable}`)

const RAM = 0xc0000
const RNG_BASE = 0xd0000
const BLK_BASE = 0xd1000
const LOAD = 0x1000
const PORT_STEP = 0x500
const PORT_DONE = 0x501
const PORT_FAIL = 0x5ff
const SECTORS = 2

const source = `
.code32
.macro desc q, i, addr, len, flags, next
  mov dword ptr [\\q + 16*\\i], \\addr
  mov dword ptr [\\q + 16*\\i + 4], 0
  mov dword ptr [\\q + 16*\\i + 8], \\len
  mov word ptr [\\q + 16*\\i + 12], \\flags
  mov word ptr [\\q + 16*\\i + 14], \\next
.endm
.macro wait_used q, n
1: pause
  cmp word ptr [\\q + 0x202], \\n
  jne 1b
.endm

start:
  mov esp, 0x8000
  mov ebp, ${RNG_BASE}
  mov edi, 0x10000
  call init_device
  desc 0x10000, 0, 0x20000, 64, 2, 0
  mov word ptr [0x10104], 0
  mov word ptr [0x10102], 1
  mov dword ptr [ebp + 0x50], 0
  wait_used 0x10000, 1
  mov eax, [ebp + 0x60]
  mov [ebp + 0x64], eax
  mov dx, ${PORT_STEP}
  out dx, eax

  mov ebp, ${BLK_BASE}
  mov edi, 0x11000
  call init_device
  xor ecx, ecx
2: mov eax, ecx
  imul eax, eax, 7
  add eax, 3
  mov [0x22000 + ecx], al
  inc ecx
  cmp ecx, ${SECTORS * 512}
  jb 2b
  mov dword ptr [0x21000], 1
  mov dword ptr [0x21008], 0
  mov dword ptr [0x21020], 0
  mov dword ptr [0x21028], 0
  mov byte ptr [0x21100], 0xff
  mov byte ptr [0x21101], 0xff
  desc 0x11000, 0, 0x21000, 16, 1, 1
  desc 0x11000, 1, 0x22000, ${SECTORS * 512}, 1, 2
  desc 0x11000, 2, 0x21100, 1, 2, 0
  mov word ptr [0x11104], 0
  mov word ptr [0x11102], 1
  mov dword ptr [ebp + 0x50], 0
  wait_used 0x11000, 1
  desc 0x11000, 3, 0x21020, 16, 1, 4
  desc 0x11000, 4, 0x23000, ${SECTORS * 512}, 3, 5
  desc 0x11000, 5, 0x21101, 1, 2, 0
  mov word ptr [0x11106], 3
  mov word ptr [0x11102], 2
  mov dword ptr [ebp + 0x50], 0
  wait_used 0x11000, 2
  mov eax, [ebp + 0x60]
  mov [ebp + 0x64], eax
  mov dx, ${PORT_STEP}
  out dx, eax
  cmp word ptr [0x21100], 0
  jne fail
  mov esi, 0x22000
  mov edi, 0x23000
  mov ecx, ${SECTORS * 512}
  cld
  repe cmpsb
  jne fail
  mov dx, ${PORT_DONE}
  out dx, al
3: jmp 3b

init_device:
  cmp dword ptr [ebp], 0x74726976
  jne fail
  cmp dword ptr [ebp + 4], 2
  jne fail
  mov dword ptr [ebp + 0x70], 0
  mov dword ptr [ebp + 0x70], 1
  mov dword ptr [ebp + 0x70], 3
  mov dword ptr [ebp + 0x24], 1
  mov dword ptr [ebp + 0x20], 1
  mov dword ptr [ebp + 0x24], 0
  mov dword ptr [ebp + 0x20], 0
  mov dword ptr [ebp + 0x70], 11
  test dword ptr [ebp + 0x70], 8
  jz fail
  mov dword ptr [ebp + 0x30], 0
  mov dword ptr [ebp + 0x38], 8
  mov [ebp + 0x80], edi
  mov dword ptr [ebp + 0x84], 0
  lea eax, [edi + 0x100]
  mov [ebp + 0x90], eax
  mov dword ptr [ebp + 0x94], 0
  lea eax, [edi + 0x200]
  mov [ebp + 0xa0], eax
  mov dword ptr [ebp + 0xa4], 0
  mov dword ptr [ebp + 0x44], 1
  mov dword ptr [ebp + 0x70], 15
  ret

fail:
  mov dx, ${PORT_FAIL}
  out dx, al
4: jmp 4b
`

function flatProtectedMode(vcpu: Vcpu, mem: DataView): void {
  // GDT at 0x500: null, flat 32-bit code, flat data (the cached descriptors below match it).
  mem.setBigUint64(0x500, 0n, true)
  mem.setBigUint64(0x508, 0x00cf9a000000ffffn, true)
  mem.setBigUint64(0x510, 0x00cf92000000ffffn, true)
  const s = vcpu.getSregs()
  const seg = {
    base: 0n,
    limit: 0xffffffff,
    present: 1,
    dpl: 0,
    s: 1,
    g: 1,
    avl: 0,
    unusable: 0,
    l: 0,
    db: 1,
  }
  s.cs = { ...seg, selector: 8, type: 11 }
  s.ds = s.es = s.fs = s.gs = s.ss = { ...seg, selector: 16, type: 3 }
  s.gdt = { base: 0x500n, limit: 23 }
  s.cr0 = 0x11n // ET | PE
  vcpu.setSregs(s)
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(LOAD), rflags: 2n })
}

const dirs: string[] = []
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

describe.skipIf(kvmUnavailable !== undefined)('virtio-mmio on /dev/kvm with a tiny guest driver', () => {
  it('reads entropy from virtio-rng and writes then reads back a pattern on virtio-blk', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-virtio-kvm-'))
    dirs.push(dir)
    const imagePath = join(dir, 'disk.img')
    writeFileSync(imagePath, new Uint8Array(64 * 1024))

    const kvm = Kvm.open()
    const vm = kvm.createVm()
    try {
      vm.setTssAddr(0xfffbd000)
      vm.createIrqchip()
      const ram = vm.mapMemory(RAM)
      vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: RAM, ram })
      new Uint8Array(ram.buffers[0]!).set(assemble(source, LOAD), LOAD)
      const memory = new FlatMemory(new RamBacking(ram.buffers, ram.chunkSize))
      const line = (irq: number) => new IrqChipLine(irq, (n, level) => vm.irqLine(n, level))
      const failures: unknown[] = []
      const events = { onNeedsReset: (e: unknown) => failures.push(e) }
      const rng = new VirtioMmioTransport(new RngDevice(), memory, line(5), events)
      const blk = new VirtioMmioTransport(
        new BlockDevice({ path: imagePath, readOnly: false, serial: 'kvm' }),
        memory,
        line(6),
        events,
      )
      // Count what went through KVM's eventfds, to show the accelerated paths were taken.
      const accelerated = { notifies: 0, interrupts: 0 }
      const kvmAccel = acceleratorFor(new KvmVirtualMachine(vm))!
      const counting: VirtioAccelerator = {
        notifier: (address, queue, onNotify) =>
          kvmAccel.notifier(address, queue, () => {
            accelerated.notifies++
            onNotify()
          }),
        interrupt: (gsi) => {
          const t = kvmAccel.interrupt(gsi)
          if (!t) return undefined
          return {
            trigger: () => {
              accelerated.interrupts++
              t.trigger()
            },
            dispose: () => t.dispose(),
          }
        },
      }
      blk.accelerate(BLK_BASE, counting)

      const trapped: string[] = []
      const steps: number[] = []
      const vcpu = vm.createVcpu(0)
      flatProtectedMode(vcpu, new DataView(ram.buffers[0]!))
      const device = (address: number) =>
        address >= BLK_BASE && address < BLK_BASE + 0x1000
          ? { t: blk, off: address - BLK_BASE }
          : address >= RNG_BASE && address < RNG_BASE + 0x1000
            ? { t: rng, off: address - RNG_BASE }
            : undefined
      let result = ''
      const handler: ExitHandler<Vcpu> = {
        pioIn: () => {},
        pioOut: (port, _data, v) => {
          if (port === PORT_STEP) steps.push(Number(v.getRegs().rax & 0xffff_ffffn))
          else {
            result = port === PORT_DONE ? 'done' : 'fail'
            v.kick()
          }
        },
        mmioRead: (address, data) => {
          const d = device(address)
          if (d) d.t.read(d.off, data)
          else data.fill(0xff)
        },
        mmioWrite: (address, data) => {
          const d = device(address)
          if (d?.off === 0x50) trapped.push(d.t === blk ? 'blk' : 'rng')
          d?.t.write(d.off, data)
        },
        onExit: () => 'stop',
      }
      const timer = setTimeout(() => vcpu.kick(), 20_000)
      const exit = await vcpu.run(handler)
      clearTimeout(timer)
      expect(exit).toEqual({ kind: 'kick' })
      expect(result).toBe('done')
      expect(failures).toEqual([])

      // rng: 64 bytes of entropy, used length 64, the used-buffer interrupt bit seen by the guest.
      const mem = new Uint8Array(ram.buffers[0]!)
      expect(mem.subarray(0x20000, 0x20040).some((b) => b !== 0)).toBe(true)
      expect(memory.readU32(guestAddress(0x10204))).toBe(0)
      expect(memory.readU32(guestAddress(0x10208))).toBe(64)
      expect(steps[0]! & 1).toBe(1)
      expect(trapped).toEqual(['rng'])

      // blk: the pattern is on the image, read back by the guest; both doorbells by ioeventfd.
      const pattern = Uint8Array.from({ length: SECTORS * 512 }, (_, i) => (i * 7 + 3) & 0xff)
      expect(new Uint8Array(readFileSync(imagePath).subarray(0, SECTORS * 512))).toEqual(pattern)
      expect(mem.subarray(0x23000, 0x23000 + SECTORS * 512)).toEqual(pattern)
      expect(steps[1]! & 1).toBe(1)
      expect(accelerated.notifies).toBe(2)
      expect(accelerated.interrupts).toBeGreaterThanOrEqual(1)
      await blk.dispose()
      await rng.dispose()
    } finally {
      vm.dispose()
      kvm.close()
    }
  })
})
