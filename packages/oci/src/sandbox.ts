#!/usr/bin/env node
// The sandbox process: the pid in the container's pid file, the process containerd's shim waits
// for. It runs the microVM (a Machine of the framework on /dev/kvm) with the container guest,
// sets the container up through the agent ('C'), has the agent prepare the init process ('S',
// held before execve until `start`), then tells `create` (its parent, over fd 3) that the
// container is created. From then on it lives exactly as long as the container's process: its
// stdio is that process's, the signals it gets go to that process, and it exits with that
// process's status (128+N for death by signal N, as the agent reports it). SIGKILL cannot be
// caught, so `kill <id> 9` kills this process and with it the VM. Its own diagnostics go to
// sandbox.log in the state directory: fds 1 and 2 belong to the container.
import { randomBytes } from 'node:crypto'
import { appendFileSync, chownSync, lstatSync, readdirSync, readFileSync, writeSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Machine } from '@vmm/core'
import type { VirtioMmio, VsockDevice } from '@vmm/virtio'
import { vmManifest } from './machine.js'
import { netRecords } from './network.js'
import { newPidNamespace, processRecords } from './procspec.js'
import { BOOT_ENTROPY, bootPayload, encodeRecords, Msg, u32 } from './protocol.js'
import { pipeStdio, type Stdio, terminalStdio } from './relay.js'
import { SANDBOX_CONFIG, type SandboxConfig } from './sandbox-config.js'
import { AGENT_BOOT_LIMIT_MS, AGENT_HELLO_PORT, AgentSession, firstSession } from './session.js'
import { FORWARDED_SIGNALS } from './signals.js'
import { CONTROL_SOCKET, STATUS_FILE, socketDir, writeAtomic } from './state.js'
import { openVmm } from './vm.js'

const dir = process.argv[2]!
const log = (msg: string) => appendFileSync(join(dir, 'sandbox.log'), `${new Date().toISOString()} ${msg}\n`)
const setStatus = (s: string) => writeAtomic(join(dir, STATUS_FILE), s)

/** One line to `create` on fd 3 ("ok" or "error <message>"); fd 3 is gone after that. */
let told = false
function tellCreate(line: string) {
  if (told) return
  told = true
  try {
    writeSync(3, `${line}\n`)
  } catch {}
}

let machine: Machine | undefined
let exiting = false
async function exit(code: number, why: string): Promise<void> {
  // The first reason wins: the agent's exit status is followed by its stream closing.
  if (exiting) return
  exiting = true
  log(`exit ${code}: ${why}`)
  tellCreate(`error ${why}`)
  try {
    const t0 = performance.now()
    await machine?.stop()
    const t1 = performance.now()
    await machine?.dispose()
    if (machine)
      log(`VM stopped in ${(t1 - t0).toFixed(0)} ms, disposed in ${(performance.now() - t1).toFixed(0)} ms`)
  } catch (e) {
    log(`stopping the VM: ${(e as Error).message}`)
  }
  process.exit(code)
}

/**
 * Before a drop to the jail's uid: the sockets made as root in the idmapped socket directory (the
 * agent's hello listener, the vsock device's) are root's to the sandbox, and connect(2) needs
 * write permission on a socket file (unix(7)): its vsock device connects to the hello listener
 * once dropped. Each is given to the jail's uid (on disk, root's again: vmm-jail-idmap.c maps the
 * directory's owner to the jail's uid).
 */
function giveSocketsToJailUid(sockets: string, jail: { uid: number; gid: number }): void {
  for (const name of readdirSync(sockets)) {
    const path = join(sockets, name)
    if (lstatSync(path).isSocket()) chownSync(path, jail.uid, jail.gid)
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => resolve())
  })
}

async function main() {
  const config = JSON.parse(readFileSync(join(dir, SANDBOX_CONFIG), 'utf8')) as SandboxConfig
  process.title = `vmm-oci sandbox ${config.id}`
  const stdio: Stdio =
    config.consoleFd !== undefined
      ? terminalStdio({ input: config.consoleFd, output: config.consoleFd + 1 })
      : config.consoleSlave
        ? terminalStdio(config.consoleSlave)
        : pipeStdio()
  let session: AgentSession | undefined
  let started = false
  for (const [s, n] of FORWARDED_SIGNALS)
    process.on(s, () => {
      log(`forwarding ${s}`)
      if (session) session.send(Msg.signal, u32(n))
      else void exit(128 + n, `${s} before the container was created`)
    })

  const control = createServer((socket) => {
    let line = ''
    socket.on('error', () => {})
    socket.on('data', async (b: Buffer) => {
      line += b.toString()
      if (!line.includes('\n')) return
      const req = JSON.parse(line.slice(0, line.indexOf('\n'))) as { op: string }
      const reply = (r: Record<string, unknown>) => socket.end(`${JSON.stringify(r)}\n`)
      try {
        if (req.op === 'start') {
          if (started) throw new Error('cannot start an already running container')
          started = true
          await session!.request(Msg.go)
          setStatus('running')
          stdio.start(session!)
        } else if (req.op === 'pause') {
          await machine!.pause()
          setStatus('paused')
        } else if (req.op === 'resume') {
          await machine!.resume()
          setStatus(started ? 'running' : 'created')
        } else throw new Error(`unknown request ${req.op}`)
        reply({ ok: true })
      } catch (e) {
        reply({ error: (e as Error).message })
      }
    })
  })
  await listen(control, join(socketDir(dir), CONTROL_SOCKET))

  const vmm = await openVmm()
  const { host, hypervisor, registry } = vmm
  let restored = false
  if (config.template) {
    // The fast start (template.ts): the pre-booted guest, this container's directories and sockets.
    try {
      machine = await vmm.Machine.restore(config.template.snapshot, {
        hypervisor,
        registry,
        overrides: config.template.overrides,
      })
      restored = true
    } catch (e) {
      log(`restoring the template ${config.template.snapshot}: ${(e as Error).message}; booting cold instead`)
    }
  }
  // A cold guest's agent says it is up by connecting to host port 1023: <vsock socket>_1023.
  let helloServer: Server | undefined
  const hello = restored
    ? undefined
    : new Promise<Socket>((resolve) => {
        helloServer = createServer({ allowHalfOpen: true }, (socket) => {
          helloServer?.close()
          resolve(socket)
        })
      })
  if (helloServer) await listen(helloServer, `${config.plan.vsockPath}_${AGENT_HELLO_PORT}`)
  if (!machine) {
    machine = await vmm.Machine.fromObject(vmManifest(config.plan), { hypervisor, registry })
    await machine.load()
  }
  // In a jail (sandbox-jail.ts), the drop of ids first (the filters do not allow setuid and its
  // kind); then vmm's seccomp filters (@vmm/host, as `vmm run` installs them), between the VM's
  // set-up and the guest's first instruction: the sockets above already listen, the pty is open.
  if (config.jail) {
    const { dropIds, dropsToUid } = await import('@vmm/host/jail')
    if (dropsToUid()) giveSocketsToJailUid(socketDir(dir), config.jail)
    log(`jail: ${dropIds() ?? 'no drop asked'}`)
  }
  if (config.seccomp !== false) host.applySeccomp(machine)
  if (restored) await machine.resume()
  else await machine.start()
  setTimeout(() => host.trimHeap(), 5000).unref() // what loading freed goes back to the system
  log(restored ? 'VM restored from the template' : 'VM started')
  // A guest whose agent never answers fails the create rather than hanging it (and containerd's
  // shim, which waits for create) for ever.
  const bootLimit = setTimeout(
    () =>
      void exit(255, `the guest's agent did not answer within ${AGENT_BOOT_LIMIT_MS / 1000} s of its start`),
    AGENT_BOOT_LIMIT_MS,
  )
  void machine.done.then((r) =>
    exit(r.status === 'guest-poweroff' ? 0 : 255, `the VM ended: ${r.status} ${r.reason}`),
  )

  const events = {
    output: (stream: 'stdout' | 'stderr', data: Buffer) => stdio.write(stream, data),
    exit: (status: number) => {
      stdio.close()
      void exit(status, `the container's process exited with status ${status}`)
    },
    close: () => void exit(255, 'the guest agent closed the connection'),
  }
  // The guest's clock and RNG from the host ('B', agent/boot.c): a template's clones wake with the
  // clock and RNG state of its snapshot.
  const boot = () => bootPayload(BigInt(Date.now()) * 1_000_000n, randomBytes(BOOT_ENTROPY))
  if (hello) {
    session = new AgentSession(await hello, events)
    await session.request(Msg.boot, boot())
  } else {
    // Connect once the guest has handled the vsock transport reset (a connection made before can
    // die in it); a guest that does not say so within 2 s is connected to anyway (firstSession retries).
    const vsock = machine.component<VirtioMmio>('vsock').device as VsockDevice
    await Promise.race([vsock.resetHandled(), sleep(2000)])
    session = await firstSession(config.plan.vsockPath, events, boot, (why) =>
      log(`first session: ${why}; again`),
    )
  }
  const setup: (readonly [string, string])[] = config.mountRecords.map((m) => ['M', m])
  if (config.spec.hostname) setup.unshift(['h', config.spec.hostname])
  if (config.network) setup.push(...netRecords(config.network))
  await session.request(Msg.setup, encodeRecords(setup))
  const init = processRecords(config.spec.process, true, newPidNamespace(config.spec))
  const pid = await session.request(Msg.spawn, encodeRecords(init))
  log(`agent ${session.hello ?? '(restored)'}: container created, guest pid ${pid}`)
  setStatus('created')
  clearTimeout(bootLimit)
  tellCreate('ok')
}

main().catch((e) => void exit(255, (e as Error).message))
