// A process that exits while its vCPUs run must not hang (real /dev/kvm, child processes).
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { kvmUnavailable } from './harness.js'

const distIndex = fileURLToPath(new URL('../dist/index.js', import.meta.url))

function child(ending: string) {
  const script = `
    import { Kvm } from ${JSON.stringify(distIndex)}
    const kvm = Kvm.open(); const vm = kvm.createVm(); const ram = vm.mapMemory(0x10000)
    new Uint8Array(ram.buffers[0]).set([0xeb, 0xfe], 0x1000) // jmp $
    vm.setUserMemoryRegion({ slot: 0, guestAddress: 0, size: ram.size, ram })
    for (const id of [0, 1]) {
      const v = vm.createVcpu(id); const s = v.getSregs(); s.cs.base = 0n; s.cs.selector = 0; v.setSregs(s)
      v.setRegs({ ...v.getRegs(), rip: 0x1000n, rflags: 2n })
      v.run({ pioIn() {}, pioOut() {}, mmioRead() {}, mmioWrite() {}, onExit: () => 'stop' })
    }
    setTimeout(() => { ${ending} }, 100)
  `
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    timeout: 20_000,
    encoding: 'utf8',
  })
}

describe.skipIf(kvmUnavailable)('process exit with running vCPUs (real /dev/kvm)', () => {
  it('process.exit() returns promptly with its code', () => {
    const r = child('process.exit(7)')
    expect(r.error).toBeUndefined()
    expect(r.status).toBe(7)
  })

  it('an uncaught exception ends the process with an error', () => {
    const r = child(`throw new Error('boom')`)
    expect(r.error).toBeUndefined()
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('boom')
  })
})
