// pnpm bench:containers — `docker run --rm IMG true` wall time with our runtime (`--runtime vmm`:
// a cold microVM boot per container) against runc on the same dockerd, side by side, and the
// host memory of a running container: the private memory of our processes (the sandbox) with
// the guest RAM it touched counted apart (the RAM mapping's resident size), against runc's
// container process. A dockerd of its own (test/e2e/docker-daemon.mjs), --network none.
// Medians; on shared kvm_pvm machines absolute times are noise: read the ratio. The fast start
// from a pre-booted template (snapshots) is not measured here yet.
import { execFileSync } from 'node:child_process'
import { DOCKER, dockerMissing, IMAGE, startDocker } from '../../test/e2e/docker-daemon.mjs'
import { mappings } from '../smaps.mjs'

const RUNS_RUNC = Number(process.env.RUNS_RUNC ?? 5)
const RUNS_VMM = Number(process.env.RUNS_VMM ?? 3)
const missing = dockerMissing()
if (missing) {
  console.log(`bench:containers skipped: ${missing}`)
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const d = await startDocker()
const docker = (args) =>
  execFileSync(DOCKER, args, { env: d.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

function time(runtime, runs) {
  const ms = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    docker(['run', '--rm', '--network', 'none', '--runtime', runtime, IMAGE, 'true'])
    ms.push(performance.now() - t0)
  }
  return ms
}

/**
 * Private memory of a process (kB, Private_Clean + Private_Dirty over every mapping), and the
 * guest RAM's share of it: of the mappings at least the VM's RAM size (256 MiB by default; the
 * kernel may merge the RAM with a neighbouring anonymous mapping), the one with most resident
 * (V8's reserved cages are larger but mostly untouched).
 */
function memory(pid, ramKiB = 256 * 1024) {
  const all = mappings(pid).map((m) => ({
    size: m.f.Size,
    rss: m.f.Rss,
    priv: m.f.Private_Clean + m.f.Private_Dirty,
  }))
  const priv = all.reduce((n, m) => n + m.priv, 0)
  const ram = all.filter((m) => m.size >= ramKiB).sort((a, b) => b.rss - a.rss)[0] ?? { rss: 0, priv: 0 }
  return { privateKiB: priv, ramKiB: ram.rss, ramPrivateKiB: ram.priv }
}

function running(runtime) {
  const id = docker(['run', '-d', '--network', 'none', '--runtime', runtime, IMAGE, 'sleep', '100000']).trim()
  const pid = Number(docker(['inspect', '-f', '{{.State.Pid}}', id]).trim())
  // Settle: the boot's page cache and the agent's first allocations.
  execFileSync('sleep', ['5'])
  const m = memory(pid)
  docker(['rm', '-f', id])
  return m
}

try {
  time('runc', 1) // warm: image layers, dockerd's first container
  const runc = time('runc', RUNS_RUNC)
  const vmm = time('vmm', RUNS_VMM)
  const mib = (kib) => (kib / 1024).toFixed(1)
  console.log(`docker run --rm ${IMAGE} true (medians, ${new Date().toISOString().slice(0, 10)})`)
  console.log(
    `  runc          ${median(runc).toFixed(0).padStart(8)} ms  (${runc.map((x) => x.toFixed(0)).join(', ')})`,
  )
  console.log(
    `  vmm (cold)    ${median(vmm).toFixed(0).padStart(8)} ms  (${vmm.map((x) => x.toFixed(0)).join(', ')})`,
  )
  console.log(`  ratio vmm/runc ${(median(vmm) / median(runc)).toFixed(1)}x`)
  const mr = running('runc')
  const mv = running('vmm')
  console.log('host memory of a running container (sleep), private to the container pid:')
  console.log(`  runc: ${mib(mr.privateKiB)} MiB (the sleep process itself)`)
  console.log(
    `  vmm:  ${mib(mv.privateKiB)} MiB private in the sandbox; guest RAM touched ${mib(mv.ramKiB)} MiB ` +
      `(${mib(mv.ramPrivateKiB)} of it private); overhead beyond guest RAM ${mib(mv.privateKiB - mv.ramPrivateKiB)} MiB`,
  )
} finally {
  await d.stop()
}
