// bench:snapshot's side by side with QEMU, on a guest both can run here: QEMU cannot boot the
// Linux guest on kvm_pvm hosts (bench:boot), so the two VMMs run the same 16-byte real-mode loop
// that writes a byte to the debug console (port 0xe9), spins, and writes again. Each is snapshotted
// while it runs (vmm: pause + Machine.snapshot through pausable-vmm.mjs; QEMU: `migrate
// exec:cat > file` over QMP, which stops the guest at its end) and restored (`vmm restore <dir>`; `qemu -incoming "exec:cat file"`),
// and the restore is timed from spawn to the first byte the restored guest writes.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { QmpClient } from '@vmm/control'
import { vmmCli } from '../../test/e2e/guest-harness.mjs'
import { controlClient, startPausable } from '../../test/e2e/snapshot-harness.mjs'

const MEMORY_MIB = 16
//  0: mov al, 'A'; 2: out 0xe9, al; 4: mov ecx, 0x40000; 10: dec ecx; 12: jnz 10; 14: jmp 2
const LOOP = Buffer.from([0xb0, 0x41, 0xe6, 0xe9, 0x66, 0xb9, 0, 0, 4, 0, 0x66, 0x49, 0x75, 0xfc, 0xeb, 0xf2])
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Spawns argv; resolves with the child and the ms from spawn to its first stdout byte. */
function firstByte(argv, cwd) {
  const t0 = performance.now()
  const child = spawn(argv[0], argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no output within 60 s: ${stderr}`)), 60_000)
    child.stdout.once('data', () => {
      clearTimeout(timer)
      resolve({ child, ms: performance.now() - t0 })
    })
    child.once('exit', (code) => reject(new Error(`${argv[0]} exited ${code} before any output: ${stderr}`)))
  })
}

const kill = (child) =>
  new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r()
    child.once('exit', r)
    child.kill('SIGKILL')
  })

async function qmp(path, child) {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null)
      throw new Error(`QEMU exited (${child.exitCode}) before its QMP socket was up`)
    if (existsSync(path))
      try {
        return await QmpClient.connect(path)
      } catch {}
    await sleep(50)
  }
  throw new Error(`no QMP on ${path}`)
}

async function vmmSide(dir) {
  writeFileSync(join(dir, 'loop.bin'), LOOP)
  const manifest = join(dir, 'loop.yaml')
  writeFileSync(
    manifest,
    `machine: { memory: ${MEMORY_MIB}MiB, irqchip: true }\ncomponents:\n` +
      `  guest: { type: raw-image, file: loop.bin, address: 0x7c00 }\n` +
      '  debugcon: { type: debugcon, resources: { port: 0xe9 } }\n',
  )
  const controlPath = join(dir, 'loop-control.sock')
  const a = startPausable(manifest, controlPath)
  await a.con.waitFor(/A/, 0, 60_000)
  await sleep(500)
  const control = await controlClient(controlPath)
  await control.send('pause')
  const snap = join(dir, 'loop-snap')
  const ts = performance.now()
  await control.send(`snapshot ${snap}`)
  const snapshotMs = performance.now() - ts
  await control.send('stop')
  control.close()
  await a.con.exitWithin(60_000)
  const { child, ms } = await firstByte([process.execPath, vmmCli, 'restore', snap], dir)
  await kill(child)
  const bytes = ['state.json', 'memory'].reduce((n, f) => n + statSync(join(snap, f)).blocks * 512, 0)
  return { snapshotMs, restoreMs: ms, bytes }
}

async function qemuSide(dir) {
  const bios = Buffer.alloc(0x10000, 0xf4)
  LOOP.copy(bios, 0xfff0) // the reset vector F000:FFF0: the same 16 bytes
  writeFileSync(join(dir, 'bios.bin'), bios)
  const base = [
    'qemu-system-x86_64',
    ...['-machine', 'pc,accel=kvm', '-m', String(MEMORY_MIB), '-bios', join(dir, 'bios.bin')],
    ...['-nodefaults', '-display', 'none', '-serial', 'none', '-monitor', 'none', '-debugcon', 'stdio'],
  ]
  const sock = join(dir, 'qmp.sock')
  const { child: a } = await firstByte([...base, '-qmp', `unix:${sock},server=on,wait=off`], dir)
  try {
    const c = await qmp(sock, a)
    await sleep(500)
    const state = join(dir, 'qemu-state')
    const ts = performance.now()
    // Migrated while it runs (QEMU stops it at the end): a state saved from a stopped guest would
    // come back stopped, waiting for `cont`.
    await c.execute('migrate', { uri: `exec:cat > ${state}` })
    for (;;) {
      const s = await c.execute('query-migrate')
      if (s.status === 'completed') break
      if (s.status === 'failed') throw new Error(`QEMU migrate failed: ${JSON.stringify(s)}`)
      await sleep(5)
    }
    const snapshotMs = performance.now() - ts
    await c.close()
    await kill(a)
    const { child, ms } = await firstByte([...base, '-incoming', `exec:cat ${state}`], dir)
    await kill(child)
    return { snapshotMs, restoreMs: ms, bytes: statSync(state).size }
  } finally {
    await kill(a)
  }
}

/** Prints the vmm and QEMU columns for the loop guest; QEMU's column says why when it cannot run. */
export async function qemuSideBySide(dir) {
  const ms = (v) => `${v.toFixed(0)} ms`
  const vmm = await vmmSide(dir)
  let qemu
  let why
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) why = 'qemu-system-x86_64 is not installed'
  else
    try {
      qemu = await qemuSide(dir)
    } catch (e) {
      why = e.message.split('\n')[0]
    }
  console.log(`real-mode loop guest, ${MEMORY_MIB} MiB, vmm against QEMU (pc, KVM):`)
  console.log(
    `  snapshot   vmm ${ms(vmm.snapshotMs)} (${vmm.bytes} B on disk)   qemu ${qemu ? `${ms(qemu.snapshotMs)} (${qemu.bytes} B)` : `(${why})`}`,
  )
  console.log(
    `  restore to the guest's first byte   vmm ${ms(vmm.restoreMs)}   qemu ${qemu ? ms(qemu.restoreMs) : `(${why})`}` +
      (qemu ? `   ratio ${(vmm.restoreMs / qemu.restoreMs).toFixed(2)}x` : ''),
  )
}
