import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SocketBackend } from '../src/devices/console/backend.js'
import { ConsoleDevice } from '../src/devices/console/device.js'
import { VsockDevice } from '../src/devices/vsock/device.js'

// Issue 13 item 1: a `path:` typo must never destroy a file (the vsock device used to rmSync it).
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
function disk(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-paths-'))
  dirs.push(dir)
  const path = join(dir, 'disk.img')
  writeFileSync(path, 'precious')
  return path
}

describe('socket paths of virtio devices', () => {
  it('virtio-vsock leaves a regular file at its path alone and fails its start naming the path', async () => {
    const path = disk()
    const device = new VsockDevice(3, path)
    await expect(device.ready()).rejects.toThrow(
      `virtio-vsock socket: cannot listen on ${path}: it exists and is a regular file`,
    )
    device.dispose()
    expect(readFileSync(path, 'utf8')).toBe('precious')
  })

  it('virtio-console (socket) leaves a regular file alone; a missing directory fails its start', async () => {
    const path = disk()
    const device = new ConsoleDevice(new SocketBackend(path))
    await expect(device.ready()).rejects.toThrow(`virtio-console socket: cannot listen on ${path}`)
    device.dispose()
    expect(readFileSync(path, 'utf8')).toBe('precious')
    const missing = new ConsoleDevice(new SocketBackend(join(path, '..', 'nodir', 'c.sock')))
    await expect(missing.ready()).rejects.toThrow(/nodir does not exist/)
    missing.dispose()
  })
})
