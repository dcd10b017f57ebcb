// `vmm run <manifest>` for the pause test, with the Machine in this process so that the test can
// pause it and look at guest RAM: the same manifest resolution and KVM hypervisor as the command,
// plus a control socket (argv[3]) that takes one command a line and answers one line:
//   pause  -> "paused"   Machine.pause(): vCPUs stopped, every component paused
//   hash   -> sha256 of all guest RAM, segment by segment (hex)
//   resume -> "resumed"
//   snapshot <dir> -> "snapshotted <state bytes> <memory bytes>"  Machine.snapshot of the paused machine
//   hotplug <id> <node as JSON> -> "hotplugged"  Machine.hotplug (the standard board's PCI devices)
//   stop   -> "stopped", then the run ends (Machine.stop)
// The exit status is the run's, as `vmm run` gives it, and like `vmm run` it runs under seccomp
// (@vmm/host applySeccomp; VMM_SECCOMP_RECORD=<file> records what the lists lack instead).
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import {
  ComponentRegistry,
  guestAddress,
  Machine,
  readManifest,
  registerBuiltins,
  resolveManifest,
} from '@vmm/core'
import { applySeccomp } from '@vmm/host'
import { hypervisorProvider } from '@vmm/kvm'

const [manifestFile, controlPath] = process.argv.slice(2)
const registry = registerBuiltins(new ComponentRegistry())
const resolved = await resolveManifest(readManifest(manifestFile), registry)
const hypervisor = await hypervisorProvider.open()
const machine = new Machine(resolved, hypervisor, registry)

function hashRam() {
  const hash = createHash('sha256')
  const chunk = new Uint8Array(1 << 20)
  for (const seg of machine.memory.memorySegments) {
    for (let at = 0; at < seg.size; at += chunk.length) {
      const n = Math.min(chunk.length, seg.size - at)
      const view = chunk.subarray(0, n)
      machine.memory.read(guestAddress(seg.start + at), view)
      hash.update(view)
    }
  }
  return hash.digest('hex')
}

const control = createServer((socket) => {
  let text = ''
  socket.on('data', async (b) => {
    text += b.toString()
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      const command = text.slice(0, nl).trim()
      text = text.slice(nl + 1)
      try {
        if (command === 'pause') {
          await machine.pause()
          socket.write('paused\n')
        } else if (command === 'resume') {
          await machine.resume()
          socket.write('resumed\n')
        } else if (command.startsWith('snapshot ')) {
          const header = await machine.snapshot(command.slice('snapshot '.length))
          socket.write(`snapshotted ${header.state.bytes} ${header.memory.bytes}\n`)
        } else if (command.startsWith('hotplug ')) {
          const [, id, ...node] = command.split(' ')
          await machine.hotplug(id, JSON.parse(node.join(' ')))
          socket.write('hotplugged\n')
        } else if (command === 'stop') {
          socket.write('stopped\n')
          await machine.stop()
        } else if (command === 'hash') socket.write(`${hashRam()}\n`)
        else socket.write(`error: unknown command ${command}\n`)
      } catch (e) {
        socket.write(`error: ${e.message}\n`)
      }
    }
  })
  socket.on('error', () => socket.destroy())
})
control.listen(controlPath)

let code = 1
try {
  await machine.realize()
  await machine.load()
  const record = process.env.VMM_SECCOMP_RECORD
  const seccomp = applySeccomp(machine, { mode: record ? 'record' : 'enforce' })
  await machine.start()
  const result = await machine.done
  if (record)
    writeFileSync(record.replaceAll('%p', String(process.pid)), JSON.stringify(seccomp.recorded(), null, 2))
  if (result.code !== 0 || result.status === 'failed') process.stderr.write(`vmm: ${result.reason}\n`)
  code = result.status === 'failed' && result.code === 0 ? 1 : result.code
} finally {
  control.close()
  await machine.dispose()
  hypervisor.dispose()
}
process.exit(code)
