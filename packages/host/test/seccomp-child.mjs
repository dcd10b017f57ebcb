// A process that confines itself with @vmm/host's seccomp (from dist) and then does what argv[2]
// says; seccomp-install.test.ts reads its exit status and stderr.
//   node-work: what a running VMM's JavaScript does (files, timers, a Unix socket, the thread
//              pool, a thread started after the filter) -> prints "ok", exits 0
//   spawn:     child_process.spawnSync -> the filter stops the process (exit 159)
//   deny-one:  a filter allowing everything but getgroups, then process.getgroups() -> exit 159
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { applySeccomp, SECCOMP_EXIT_CODE } from '../dist/index.js'
import { native } from '../dist/native.js'
import { compile, RET } from '../dist/seccomp/bpf.js'
import { SYSCALLS } from '../dist/seccomp/syscalls.js'

const what = process.argv[2]
const noVcpus = { virtualMachine: {} } // a VM without vCPU threads of its own: the process filter only
// SECCOMP_CHILD_RECORD=1: record instead of enforcing, and print what the list lacked (to measure).
const recording = process.env.SECCOMP_CHILD_RECORD === '1'
const confine = () => applySeccomp(noVcpus, recording ? { mode: 'record' } : {})
if (what === 'deny-one') {
  const names = []
  for (const [name, nr] of Object.entries(SYSCALLS)) names[nr] = name
  native().seccompReporter(names, SECCOMP_EXIT_CODE)
  const allButOne = Object.keys(SYSCALLS).filter((n) => n !== 'getgroups')
  native().seccompInstall(compile(allButOne, { defaultAction: RET.TRAP | 1, trapData: 1 }), {
    tsync: true,
    record: false,
    kind: 1,
  })
  console.log(process.getgroups())
} else if (what === 'spawn') {
  confine()
  const r = spawnSync('true')
  console.log(`spawned: ${r.status} ${r.error?.message}`)
} else if (what === 'node-work') {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-seccomp-'))
  const seccomp = confine()
  writeFileSync(join(dir, 'f'), 'data')
  await readFile(join(dir, 'f')) // on libuv's pool
  await new Promise((r) => setTimeout(r, 20))
  const sock = join(dir, 's')
  const server = createServer((c) => c.end('pong'))
  await new Promise((r) => server.listen(sock, r))
  const reply = await new Promise((resolve, reject) => {
    const c = createConnection(sock)
    let got = ''
    c.on('data', (d) => (got += d))
    c.on('end', () => resolve(got))
    c.on('error', reject)
  })
  await new Promise((r) => server.close(r))
  // A thread started after the filter: it carries the filter (TSYNC and inheritance) and works.
  const fromWorker = await new Promise((resolve, reject) => {
    const w = new Worker('require("node:worker_threads").parentPort.postMessage(6 * 7)', { eval: true })
    w.once('message', resolve)
    w.once('error', reject)
  })
  readFileSync(join(dir, 'f'))
  rmSync(dir, { recursive: true })
  if (recording) console.error(JSON.stringify(seccomp.recorded()))
  console.log(`ok ${reply} ${fromWorker}`)
}
