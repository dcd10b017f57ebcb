// Snapshots over QMP. Named with the `x-` prefix qmp-spec reserves for our own, not QEMU's names:
// QEMU's `snapshot-save` is a background job (job-id, tag, vmstate and devices naming qcow2
// images, finished by JOB_STATUS_CHANGE events) and `migrate "file:..."` streams one file;
// ours writes a snapshot directory (Machine.snapshot: pinned manifest, vCPU/VM/device state,
// guest RAM) synchronously, from a paused machine, and answers when it is complete. A client
// that sent QEMU's commands would get a different contract under the same name, so it gets none.
//
// Restore is not a verb: Machine.restore builds a new machine, and this controller drives the
// one it was made for. Restoring is `vmm restore <dir> --paused --qmp <socket>` then `cont`, the
// shape of QEMU's `-incoming` plus `cont`.
import { isAbsolute } from 'node:path'
import type { Verb } from './controller.js'
import { CommandError } from './errors.js'

export const SNAPSHOT_VERBS: Record<string, Verb> = {
  'x-snapshot-save': {
    description:
      'write the paused machine into snapshot directory `dir` (absolute, must not exist); restore with vmm restore <dir>',
    args: { args: { dir: { type: 'string' } } },
    returns: { object: { dir: 'str', 'state-bytes': 'int', 'memory-bytes': 'int' } },
    run: async (c, a) => {
      const dir = a.dir as string
      if (!isAbsolute(dir))
        throw new CommandError(
          'GenericError',
          `x-snapshot-save: 'dir' must be an absolute path (the server's working directory is not the client's): ${dir}`,
        )
      if (c.machine.state !== 'paused')
        throw new CommandError(
          'GenericError',
          `x-snapshot-save: the machine is ${c.machine.state}; a snapshot is taken of a paused machine (stop first)`,
        )
      try {
        const h = await c.machine.snapshot(dir)
        return { dir, 'state-bytes': h.state.bytes, 'memory-bytes': h.memory.bytes }
      } catch (e) {
        // SnapshotError names the file and what is wrong; a component that cannot be saved names itself.
        throw new CommandError('GenericError', `x-snapshot-save: ${(e as Error).message}`)
      }
    },
  },
}
