// Building the container template (template.ts says what it is): the container guest booted on
// the micro board with the template's fixed device set, until its agent says hello over vsock;
// then 'T' closes that session (so no connection is open in the snapshot: a listener is all the
// agent has on vsock), the machine is paused and snapshotted. The entry is complete or absent in
// the cache (~/.cache/vmm/container-template/<key>/, @vmm/image's ensureEntry: built in a
// temporary directory under the key's lock, renamed into place), so concurrent `create`s build it
// once and the others wait. It is built on first use by `create` (that container then restores
// it too) or ahead of time by `vmm-oci template build`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OciError } from './errors.js'
import { type VmPlan, vmManifest } from './machine.js'
import { Msg } from './protocol.js'
import type { SandboxConfig } from './sandbox-config.js'
import { AGENT_BOOT_LIMIT_MS, AGENT_HELLO_PORT, AgentSession } from './session.js'
import {
  SLOT_TAGS,
  TEMPLATE_SIZE,
  type Template,
  type TemplateGuest,
  templateKeyParts,
  templateOverrides,
  templatePlan,
  whyNotTemplate,
} from './template.js'
import { openVmm } from './vm.js'

function paths(dir: string): Template {
  return { dir, snapshot: join(dir, 'snapshot'), empty: join(dir, 'empty') }
}

/** The template for `guest` in the cache, built now (under its lock) when it is not there yet. */
export async function ensureTemplate(
  guest: TemplateGuest,
  say: (msg: string) => void = () => {},
): Promise<Template & { built: boolean }> {
  const [{ cacheRoot, contentKey, ensureEntry }, { SNAPSHOT_VERSION }] = await Promise.all([
    import('@vmm/image'),
    import('@vmm/core'),
  ])
  const dir = join(cacheRoot(), 'container-template', contentKey(templateKeyParts(guest, SNAPSHOT_VERSION)))
  const built = await ensureEntry(
    dir,
    (e) => say(e.message),
    (tmp) => buildTemplate(tmp, guest, say),
  )
  return { ...paths(dir), built }
}

/** Boots the template's guest and saves it into `tmp` (a directory to be renamed into the cache). */
export async function buildTemplate(
  tmp: string,
  guest: TemplateGuest,
  say: (msg: string) => void,
): Promise<void> {
  const t = paths(tmp)
  mkdirSync(t.empty, { mode: 0o555 })
  // The vsock socket in a short directory of its own (sun_path holds 107 bytes, unix(7)).
  const sockets = mkdtempSync(join(tmpdir(), 'vmm-oci-template-'))
  const plan = templatePlan(guest, {
    consoleLog: join(tmp, 'console.log'),
    vsockPath: join(sockets, 'vsock.sock'),
    empty: t.empty,
  })
  const vmm = await openVmm()
  const server = createServer({ allowHalfOpen: true })
  let machine: InstanceType<typeof vmm.Machine> | undefined
  let timer: NodeJS.Timeout | undefined
  try {
    const hello = new Promise<Socket>((resolve, reject) => {
      server.once('connection', resolve)
      server.once('error', reject)
      server.listen(`${plan.vsockPath}_${AGENT_HELLO_PORT}`)
    })
    machine = await vmm.Machine.fromObject(vmManifest(plan), {
      hypervisor: vmm.hypervisor,
      registry: vmm.registry,
    })
    await machine.load()
    const t0 = Date.now()
    await machine.start()
    say('booting the container template')
    const ended = machine.done.then((r) => {
      throw new OciError(`the template's guest ended before its agent was up: ${r.status} ${r.reason}`)
    })
    ended.catch(() => {}) // also settles when the finally below stops the machine
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new OciError(
              `the template's guest agent did not say hello within ${AGENT_BOOT_LIMIT_MS / 1000} s`,
            ),
          ),
        AGENT_BOOT_LIMIT_MS,
      )
    })
    const socket = await Promise.race([hello, ended, late])
    // The agent's end of the stream (its close); ours is half-open until we end it too.
    const closed = new Promise<void>((resolve) => {
      socket.once('end', () => resolve())
      socket.once('close', () => resolve())
    })
    const session = new AgentSession(socket)
    await Promise.race([session.request(Msg.template), ended, late])
    await Promise.race([closed, ended, late])
    socket.destroy()
    await machine.pause()
    await machine.snapshot(t.snapshot)
    writeFileSync(
      join(tmp, 'template.json'),
      `${JSON.stringify({ guest, size: TEMPLATE_SIZE, slots: SLOT_TAGS, bootMs: Date.now() - t0, built: new Date().toISOString() }, null, 2)}\n`,
    )
    say(`container template saved after a boot of ${Date.now() - t0} ms`)
  } finally {
    clearTimeout(timer)
    server.close()
    try {
      await machine?.stop()
    } catch {}
    await machine?.dispose()
    rmSync(sockets, { recursive: true, force: true })
  }
}

/**
 * The template a container with `plan` restores (its snapshot and this container's overrides),
 * built first when the cache has none; undefined, with the reason in a debug line, when the
 * container boots cold: `off` (the template is turned off, and why), a plan the template cannot
 * serve (template.ts), or a template that could not be built.
 */
export async function templateFor(
  plan: VmPlan,
  guest: TemplateGuest,
  off: string | undefined,
  debug: (msg: string) => void,
): Promise<SandboxConfig['template']> {
  const why = off ?? whyNotTemplate(plan, guest)
  if (why) {
    debug(`cold boot, not the template: ${why}`)
    return undefined
  }
  try {
    const t = await ensureTemplate(guest, debug)
    return { snapshot: t.snapshot, overrides: templateOverrides(plan, t.empty) }
  } catch (e) {
    debug(`cold boot, not the template: building it failed: ${(e as Error).message}`)
    return undefined
  }
}

/** `vmm-oci template build`: the template for the container guest, made ahead of the first container. */
export async function templateCommand(args: readonly string[], agentDir: string): Promise<void> {
  if (args.length !== 1 || args[0] !== 'build')
    throw new OciError(`template: expected "template build", got "template ${args.join(' ')}"`, 2)
  const { ensureContainerGuest } = await import('@vmm/image')
  const t = await ensureTemplate(await ensureContainerGuest(agentDir), (m) => process.stderr.write(`${m}\n`))
  process.stdout.write(`${t.dir}${t.built ? '' : ' (already built)'}\n`)
}
