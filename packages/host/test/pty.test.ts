// openPty and sendFd on the real host: a raw pty passes bytes untouched both ways (no echo, no
// CR/LF translation), and the master fd sent over a Unix socket with SCM_RIGHTS arrives as a
// working fd in another process (python3's socket.recv_fds, a receiver that is not ours), as
// containerd's shim receives it from runc's --console-socket.
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, readSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openPty, sendFd } from '../src/index.js'

const read = (fd: number) => {
  const b = Buffer.alloc(256)
  return b.subarray(0, readSync(fd, b)).toString()
}

describe('pty', () => {
  it('a raw pair is a transparent pipe', () => {
    const p = openPty(true)
    try {
      expect(p.name).toMatch(/^\/dev\/pts\/\d+$/)
      writeSync(p.master, 'a\nb\r')
      expect(read(p.slave)).toBe('a\nb\r')
      writeSync(p.slave, 'x\ny')
      expect(read(p.master)).toBe('x\ny')
    } finally {
      closeSync(p.master)
      closeSync(p.slave)
    }
  })

  it('a cooked pair translates output newlines (the default termios)', () => {
    const p = openPty(false)
    try {
      writeSync(p.slave, 'x\n')
      expect(read(p.master)).toBe('x\r\n')
    } finally {
      closeSync(p.master)
      closeSync(p.slave)
    }
  })

  it('sendFd hands the master to another process over a Unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-pty-'))
    const sock = join(dir, 'console.sock')
    // The receiver writes through the fd it got, then says how many fds came.
    const receiver = spawn('python3', [
      '-c',
      `import socket, os
s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(sock)}); s.listen(1); print('ready', flush=True)
c, _ = s.accept(); msg, fds, flags, addr = socket.recv_fds(c, 1, 4)
os.write(fds[0], b'via-master'); print(len(fds), flush=True)`,
    ])
    let out = ''
    receiver.stdout.on('data', (b: Buffer) => (out += b.toString()))
    for (let i = 0; i < 500 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 10))
    const p = openPty(true)
    try {
      sendFd(sock, p.master)
      const code = await new Promise((r) => receiver.on('close', r))
      expect(code).toBe(0)
      expect(out.trim().split('\n').at(-1)).toBe('1')
      expect(read(p.slave)).toBe('via-master')
    } finally {
      closeSync(p.master)
      closeSync(p.slave)
      rmSync(dir, { recursive: true, force: true })
    }
    expect(() => sendFd(join(dir, 'gone.sock'), 0)).toThrow(/connect failed: ENOENT/)
  })
})
