#!/usr/bin/env node
// An exec process's host end (see exec.ts): its own session to the agent, the process spawned
// there at once ('S' without wait), stdio relayed, the signals this process gets forwarded, and
// this process's exit status the guest process's. Registered under exec/<pid> (with its start
// time) so that `ps` lists it and `delete` ends it. If this process is SIGKILLed, the agent sees
// the session close and kills the guest process: nothing is left running in the guest.
import { readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { ExecConfig } from './exec.js'
import { processRecords } from './procspec.js'
import { encodeRecords, Msg, u32 } from './protocol.js'
import { pipeStdio, terminalStdio } from './relay.js'
import { connectAgent } from './session.js'
import { FORWARDED_SIGNALS } from './signals.js'
import { EXEC_DIR, procStat } from './state.js'

const [dir, configFile] = [process.argv[2]!, process.argv[3]!]
const registration = join(dir, EXEC_DIR, String(process.pid))

function finish(code: number, line?: string): never {
  if (line)
    try {
      writeSync(3, `${line}\n`)
    } catch {}
  rmSync(registration, { force: true })
  process.exit(code)
}

async function main() {
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as ExecConfig
  rmSync(configFile, { force: true })
  process.title = `vmm-oci exec ${config.process.args.join(' ')}`.slice(0, 200)
  writeFileSync(registration, String(procStat(process.pid)?.start ?? 0))
  const stdio = config.consoleSlave ? terminalStdio(config.consoleSlave) : pipeStdio()
  const session = await connectAgent(config.vsockPath, {
    output: (stream, data) => stdio.write(stream, data),
    exit: (status) => {
      stdio.close()
      finish(status)
    },
    close: () => finish(255),
  })
  for (const [name, n] of FORWARDED_SIGNALS) process.on(name, () => session.send(Msg.signal, u32(n)))
  await session.request(Msg.spawn, encodeRecords(processRecords(config.process, false)))
  writeSync(3, 'ok\n')
  stdio.start(session)
}

main().catch((e) => finish(255, `error ${(e as Error).message}`))
