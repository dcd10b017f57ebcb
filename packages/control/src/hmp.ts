// human-monitor-command (qapi/misc.json): QEMU's human monitor through QMP. We answer the few
// read-only `info` commands people and scripts use to look at a machine, with QEMU's wording,
// and say "unknown command" for the rest, as QEMU's monitor does (a successful return whose text
// says so, not a QMP error).
import type { Controller } from './controller.js'
import { runState } from './run-state.js'

const HELP: Record<string, string> = {
  'info status': 'show the current VM status (running|paused)',
  'info version': 'show the version of QEMU (the dialect we speak) and what we are',
  'info kvm': 'show KVM information',
  'info name': 'show the current VM name',
  'info uuid': 'show the current VM UUID',
  'info cpus': 'show infos for each CPU',
}

/** The text HMP prints for `line`, CRLF-ended as QEMU's monitor writes it. */
export function hmp(c: Controller, line: string): string {
  const words = line
    .trim()
    .split(/\s+/)
    .filter((w) => w !== '')
  const cmd = words.join(' ')
  const lines = ((): string[] => {
    switch (cmd) {
      case 'info status':
        return [`VM status: ${runState(c.machine.state)}`]
      case 'info version': {
        const { major, minor, micro } = c.version.qemu
        return [`${major}.${minor}.${micro} (${c.version.package})`]
      }
      case 'info kvm':
        return [`kvm support: ${c.machine.hypervisor.name === 'kvm' ? 'enabled' : 'disabled'}`]
      case 'info name':
        return c.identity.name !== undefined ? [c.identity.name] : []
      case 'info uuid':
        return [c.identity.uuid ?? '00000000-0000-0000-0000-000000000000']
      case 'info cpus':
        return c.machine.vcpus.map((v, i) => `${i === 0 ? '*' : ' '}CPU #${v.id}: thread_id=${process.pid}`)
      case 'help':
      case 'info':
        return Object.entries(HELP).map(([k, v]) => `${k} -- ${v}`)
      default:
        return [`unknown command: '${words[0] === 'info' ? cmd : (words[0] ?? '')}'`]
    }
  })()
  return lines.map((l) => `${l}\r\n`).join('')
}
