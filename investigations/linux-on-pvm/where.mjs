// where.mjs MANIFEST [SECONDS] [SAMPLES]: runs the manifest on /dev/kvm and, after SECONDS (default
// 120), pauses the machine SAMPLES times (default 20, 0.5 s apart) to read every vCPU's rip, rsp and
// rflags; prints them with the kernel symbol (System.map of the default guest). For hangs where the
// guest prints nothing and takes no interrupts (the 2-vCPU bring-up).
import { readFileSync } from 'node:fs'
import { ComponentRegistry, Machine, registerBuiltins } from '../../packages/core/dist/index.js'
import { findDefaultGuest } from '../../packages/image/dist/index.js'
import { Kvm, KvmHypervisor } from '../../packages/kvm/dist/index.js'

const [manifest, seconds = '120', samples = '20'] = process.argv.slice(2)
const guest = await findDefaultGuest()
const map = readFileSync(guest.vmlinux.replace(/vmlinux$/, 'System.map'), 'utf8')
  .split('\n')
  .map((l) => l.split(' '))
  .filter((f) => f.length === 3 && /^[tTwW]$/.test(f[1]))
  .map(([a, , n]) => [BigInt(`0x${a}`), n])
  .sort((x, y) => (x[0] < y[0] ? -1 : 1))
const symbol = (rip) => {
  let lo = 0
  let hi = map.length - 1
  if (rip < map[0][0]) return `0x${rip.toString(16)}`
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (map[mid][0] <= rip) lo = mid
    else hi = mid - 1
  }
  return `${map[lo][1]}+0x${(rip - map[lo][0]).toString(16)}`
}
const registry = registerBuiltins(new ComponentRegistry())
const m = await Machine.fromFile(manifest, { hypervisor: new KvmHypervisor(Kvm.open()), registry })
const run = m.run()
await new Promise((r) => setTimeout(r, Number(seconds) * 1000))
void run.then((r) => console.log(`[where] the run ended: ${JSON.stringify(r)}`))
for (let i = 0; i < Number(samples) && m.state === 'running'; i++) {
  await m.pause()
  const row = m.vcpus.map((v) => {
    const r = v.getRegs()
    return `vCPU ${v.id}: ${symbol(r.rip)} rflags=0x${r.rflags.toString(16)}`
  })
  console.log(`[where] ${row.join(' | ')}`)
  await m.resume()
  await new Promise((r) => setTimeout(r, 500))
}
await m.stop()
await run
process.exit(0)
