// `vmm run --qmp <path>`: the machine's control plane (@vmm/control) served as QMP on a Unix
// socket for the length of the run. Loaded only when --qmp is given, so a plain run pays nothing.
import type { Machine } from '@vmm/core'

export interface QmpHandle {
  close(): Promise<void>
}

/** Listens on `path` (0600; refuses to replace anything but a stale socket) for `machine`. */
export async function serveQmp(machine: Machine, path: string): Promise<QmpHandle> {
  const { Controller, QmpServer } = await import('@vmm/control')
  const controller = new Controller(machine)
  let server: Awaited<ReturnType<typeof QmpServer.listen>>
  try {
    server = await QmpServer.listen(path, controller)
  } catch (e) {
    controller.close()
    throw new Error(`--qmp ${path}: ${(e as Error).message}`)
  }
  return {
    async close() {
      // The SHUTDOWN event goes out before the clients are closed: the run has ended by now.
      await server.close()
      controller.close()
    },
  }
}
