import { ConfigError, pathSchema } from '@vmm/core'
import { defineVirtioDevice } from '../../definition.js'
import { virtioMmioType } from '../../mmio/component.js'
import { type ConsoleBackend, SocketBackend, StdioBackend } from './backend.js'
import { ConsoleDevice } from './device.js'

export interface ConsoleConfig {
  /** stdio: the VMM's stdin/stdout; socket: a Unix socket at `path` the VMM listens on. */
  backend: 'stdio' | 'socket'
  path?: string
}

/** The catalogue entry of virtio-console: both its virtio-mmio and its virtio-pci type are made from it. */
export const consoleDefinition = defineVirtioDevice<ConsoleConfig>({
  name: 'virtio-console',
  what: 'virtio console',
  note: 'hvc0',
  detail: ' on stdio or a Unix socket',
  schema: {
    properties: {
      backend: { enum: ['stdio', 'socket'], default: 'stdio' },
      path: { ...pathSchema, description: 'the Unix socket to listen on (backend: socket)' },
    },
  },
  resources(config) {
    if (config.backend === 'socket' && !config.path)
      throw new ConfigError('path', 'a socket console needs a path')
    return []
  },
  create(config) {
    const backend: ConsoleBackend =
      config.backend === 'socket' ? new SocketBackend(config.path!) : new StdioBackend()
    return new ConsoleDevice(backend)
  },
})

export const virtioConsoleType = virtioMmioType(consoleDefinition)
