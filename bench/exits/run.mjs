// pnpm bench:exits — the cost of one vCPU exit handled in TypeScript, against the bare C loop:
// through a bare device object (vmm-loop.mjs), and through the whole machine (machine-loop.mjs).
// Both run the same real-mode guest on this machine in one run, alternating, several rounds; the
// median of each side is compared. Absolute times on shared machines are noise: read the ratio.
// A third side runs the TypeScript loop under vmm's seccomp filters (`vmm run`'s default); its
// ratio to the unfiltered loop is what the filters cost on the exit path.
import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildGuest, LOAD } from './guests.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const COUNT = Number(process.env.EXITS ?? 1_000_000)
const ROUNDS = Number(process.env.ROUNDS ?? 3)

const cLoop = join(mkdtempSync(join(tmpdir(), 'vmm-bench-c-')), 'loop')
execFileSync('cc', ['-O2', '-o', cLoop, join(here, 'loop.c')])

function parse(out) {
  const [exits, seconds] = out.trim().split(/\s+/).map(Number)
  return { exits, seconds }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

console.log(`bench:exits — ${COUNT.toLocaleString()} exits per run, ${ROUNDS} rounds, median per side`)
for (const kind of ['pio', 'mmio']) {
  const guest = buildGuest(kind, COUNT)
  const c = []
  const ts = []
  const whole = []
  const sc = []
  for (let r = 0; r < ROUNDS; r++) {
    whole.push(wholeMachine(guest, kind))
    const a = parse(execFileSync(cLoop, [guest, String(LOAD)], { encoding: 'utf8' }))
    const b = parse(execFileSync(process.execPath, [join(here, 'vmm-loop.mjs'), guest], { encoding: 'utf8' }))
    const f = parse(
      execFileSync(process.execPath, [join(here, 'vmm-loop.mjs'), guest, '--seccomp'], { encoding: 'utf8' }),
    )
    if (a.exits !== COUNT || b.exits !== COUNT || f.exits !== COUNT)
      throw new Error(
        `expected ${COUNT} exits, got C ${a.exits}, vmm ${b.exits}, vmm with seccomp ${f.exits}`,
      )
    c.push((a.seconds / a.exits) * 1e6)
    ts.push((b.seconds / b.exits) * 1e6)
    sc.push((f.seconds / f.exits) * 1e6)
  }
  const mc = median(c)
  const mt = median(ts)
  const ms = median(sc)
  const label = kind === 'pio' ? 'PIO out   ' : 'MMIO read '
  console.log(
    `${label} C loop ${mc.toFixed(3)} µs/exit   vmm (TypeScript device) ${mt.toFixed(3)} µs/exit   ratio ${(mt / mc).toFixed(3)}x`,
  )
  const mw = median(whole)
  console.log(
    `${label} C loop ${mc.toFixed(3)} µs/exit   vmm (whole machine)     ${mw.toFixed(3)} µs/exit   ratio ${(mw / mc).toFixed(3)}x`,
  )
  console.log(
    `${' '.repeat(label.length)} vmm under seccomp ${ms.toFixed(3)} µs/exit   seccomp/none ${(ms / mt).toFixed(3)}x`,
  )
}

/**
 * µs per exit of the same guest run as a manifest (machine-loop.mjs): the raw-image loader and a
 * device component on the machine's PIO or MMIO bus, through the exit policy and bus lookup.
 */
function wholeMachine(guest, kind) {
  const out = execFileSync(process.execPath, [join(here, 'machine-loop.mjs'), guest, kind], {
    encoding: 'utf8',
  })
  const w = parse(out)
  if (w.exits !== COUNT) throw new Error(`expected ${COUNT} exits, got ${w.exits} on the whole machine`)
  return (w.seconds / w.exits) * 1e6
}
