// pnpm bench:containers — `docker run --rm IMG true` wall time with our runtime from the
// pre-booted container template (`--runtime vmm`: a snapshot restore per container), with a cold
// microVM boot per container (`--runtime vmm-cold`), and with runc on the same dockerd, side by
// side, and the host memory of running containers: the private memory of our processes (the
// sandbox) with the guest RAM it touched counted apart (the RAM mapping's resident size), against
// runc's container process. A restored clone's RAM is the template's memory file mapped
// MAP_PRIVATE: pages it only read stay the page cache's, shared by every clone (Shared_Clean once
// two map them), pages it wrote are its own copies (Private_Dirty). A dockerd of its own
// (test/e2e/docker-daemon.mjs), --network none. Medians; on shared kvm_pvm machines absolute
// times are noise: read the ratios.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { buildTemplate, DOCKER, dockerMissing, IMAGE, startDocker } from '../../test/e2e/docker-daemon.mjs'
import { mappings } from '../smaps.mjs'

const RUNS_RUNC = Number(process.env.RUNS_RUNC ?? 5)
const RUNS_VMM = Number(process.env.RUNS_VMM ?? 3)
const RUNS_TEMPLATE = Number(process.env.RUNS_TEMPLATE ?? 5)
const missing = dockerMissing()
if (missing) {
  console.log(`bench:containers skipped: ${missing}`)
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`container template: ${buildTemplate()}`)
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
    dirty: m.f.Private_Dirty,
    shared: m.f.Shared_Clean + m.f.Shared_Dirty,
  }))
  const priv = all.reduce((n, m) => n + m.priv, 0)
  const ram = all.filter((m) => m.size >= ramKiB).sort((a, b) => b.rss - a.rss)[0] ?? {
    rss: 0,
    priv: 0,
    dirty: 0,
    shared: 0,
  }
  return {
    privateKiB: priv,
    ramKiB: ram.rss,
    ramPrivateKiB: ram.priv,
    ramDirtyKiB: ram.dirty,
    ramSharedKiB: ram.shared,
  }
}

/**
 * `pid` and the processes below it: the jailed sandbox is vmm-jail's supervisor (the container's
 * pid), its init and the sandbox itself (packages/oci/src/sandbox-jail.ts).
 */
function tree(pid) {
  const parent = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const out = [pid]
  for (let i = 0; i < out.length; i++) for (const [c, p] of parent) if (p === out[i]) out.push(c)
  return out
}

/** The memory of the container's processes together (memory() of each, summed). */
function treeMemory(pid) {
  const sum = {}
  for (const m of tree(pid).map((p) => memory(p)))
    for (const [k, v] of Object.entries(m)) sum[k] = (sum[k] ?? 0) + v
  return sum
}

/** `count` idle containers at once (sleep), each one's memory. */
function running(runtime, count = 1) {
  const ids = []
  for (let i = 0; i < count; i++)
    ids.push(
      docker(['run', '-d', '--network', 'none', '--runtime', runtime, IMAGE, 'sleep', '100000']).trim(),
    )
  const pids = ids.map((id) => Number(docker(['inspect', '-f', '{{.State.Pid}}', id]).trim()))
  // Settle: the boot's page cache and the agent's first allocations.
  execFileSync('sleep', ['5'])
  const m = pids.map((pid) => treeMemory(pid))
  docker(['rm', '-f', ...ids])
  return m
}

try {
  time('runc', 1) // warm: image layers, dockerd's first container
  const runc = time('runc', RUNS_RUNC)
  time('vmm', 1) // warm: the template's memory file in the page cache
  const template = time('vmm', RUNS_TEMPLATE)
  const nojail = time('vmm-nojail', RUNS_TEMPLATE)
  const cold = time('vmm-cold', RUNS_VMM)
  const mib = (kib) => (kib / 1024).toFixed(1)
  const row = (name, xs) =>
    console.log(
      `  ${name.padEnd(16)}${median(xs).toFixed(0).padStart(8)} ms  (${xs.map((x) => x.toFixed(0)).join(', ')})`,
    )
  console.log(`docker run --rm ${IMAGE} true (medians, ${new Date().toISOString().slice(0, 10)})`)
  row('runc', runc)
  row('vmm (template)', template)
  row('  --no-jail', nojail)
  row('vmm (cold)', cold)
  console.log(
    `  ratios: template/runc ${(median(template) / median(runc)).toFixed(1)}x, cold/runc ${(median(cold) / median(runc)).toFixed(1)}x, cold/template ${(median(cold) / median(template)).toFixed(1)}x, jailed/unjailed ${(median(template) / median(nojail)).toFixed(2)}x`,
  )
  const [mr] = running('runc')
  const [mc] = running('vmm-cold')
  const clones = running('vmm', 2)
  const [mu] = running('vmm-nojail')
  console.log(
    'host memory of a running container (sleep), private to the container pid and its children (a jail: supervisor, init, sandbox):',
  )
  console.log(`  runc: ${mib(mr.privateKiB)} MiB (the sleep process itself)`)
  const vm = (name, m) =>
    console.log(
      `  ${name}: ${mib(m.privateKiB)} MiB private in the sandbox; guest RAM touched ${mib(m.ramKiB)} MiB ` +
        `(${mib(m.ramPrivateKiB)} private, ${mib(m.ramDirtyKiB)} of it written, ${mib(m.ramSharedKiB)} shared); ` +
        `overhead beyond guest RAM ${mib(m.privateKiB - m.ramPrivateKiB)} MiB`,
    )
  vm('vmm cold', mc)
  for (const [i, m] of clones.entries()) vm(`vmm template, clone ${i + 1} of 2`, m)
  vm('vmm template, --no-jail', mu)
} finally {
  await d.stop()
}
