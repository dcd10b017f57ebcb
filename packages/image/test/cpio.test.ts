// The cpio writer against a real consumer: GNU cpio lists (-t) and unpacks (-i) what it wrote.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type CpioEntry, gzipCpio, writeCpio } from '../src/cpio.js'

const hasCpio = spawnSync('cpio', ['--version']).status === 0
if (!hasCpio) console.warn('cpio tests skipped: no cpio program (apt-get install -y cpio)')

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmm-cpio-'))
  dirs.push(d)
  return d
}

/** `cpio -tv` of an archive: one line per entry, in archive order. */
function listVerbose(archive: Buffer): string[] {
  return execFileSync('cpio', ['-tv', '--quiet'], {
    input: archive,
    encoding: 'utf8',
    env: { LC_ALL: 'C', TZ: 'UTC' },
  })
    .trim()
    .split('\n')
}

// Data lengths 0..5 and names of every length mod 4 exercise each padding case of both paddings.
const entries: CpioEntry[] = [
  { type: 'dir', path: 'bin' },
  { type: 'file', path: 'bin/tool', data: 'run\n', mode: 0o755 },
  { type: 'file', path: 'etc/a', data: '' },
  { type: 'file', path: 'etc/ab', data: 'x' },
  { type: 'file', path: 'etc/abc', data: 'xy' },
  { type: 'file', path: 'etc/abcd', data: 'xyz' },
  { type: 'file', path: 'etc/abcde', data: new Uint8Array([0, 1, 2, 255, 254]) },
  { type: 'symlink', path: 'bin/sh', target: '/bin/tool' },
  { type: 'dir', path: 'tmp', mode: 0o1777 },
]

describe.skipIf(!hasCpio)('writeCpio read by GNU cpio', () => {
  it('lists every entry in order, missing parents first, with types and modes', () => {
    const lines = listVerbose(writeCpio(entries))
    const summary = lines.map((l) => {
      const f = l.split(/\s+/)
      return `${f[0]} ${f.slice(8).join(' ')}`
    })
    expect(summary).toEqual([
      'drwxr-xr-x bin',
      '-rwxr-xr-x bin/tool',
      'drwxr-xr-x etc',
      '-rw-r--r-- etc/a',
      '-rw-r--r-- etc/ab',
      '-rw-r--r-- etc/abc',
      '-rw-r--r-- etc/abcd',
      '-rw-r--r-- etc/abcde',
      'lrwxrwxrwx bin/sh -> /bin/tool',
      'drwxrwxrwt tmp',
    ])
  })

  it('unpacks files with their contents, modes and symlink targets', () => {
    const archive = join(tmp(), 'a.cpio')
    writeFileSync(archive, writeCpio(entries))
    const out = tmp()
    execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames', '-F', archive], { cwd: out })
    expect(readFileSync(join(out, 'bin/tool'), 'utf8')).toBe('run\n')
    expect(statSync(join(out, 'bin/tool')).mode & 0o7777).toBe(0o755)
    expect(readFileSync(join(out, 'etc/a')).length).toBe(0)
    expect(readFileSync(join(out, 'etc/abcd'), 'utf8')).toBe('xyz')
    expect([...readFileSync(join(out, 'etc/abcde'))]).toEqual([0, 1, 2, 255, 254])
    expect(readlinkSync(join(out, 'bin/sh'))).toBe('/bin/tool')
  })

  it('writes character and block device nodes with their major and minor numbers', () => {
    const lines = listVerbose(
      writeCpio([
        { type: 'char', path: 'dev/console', major: 5, minor: 1 },
        { type: 'block', path: 'dev/vda', major: 254, minor: 0, mode: 0o660 },
      ]),
    )
    // GNU cpio -tv prints "major, minor" where a file's size would be.
    expect(lines[1]).toMatch(/^crw------- .* 5,\s+1 .* dev\/console$/)
    expect(lines[2]).toMatch(/^brw-rw---- .* 254,\s+0 .* dev\/vda$/)
  })

  it('gzip output is one gzip member that cpio reads after gunzip', () => {
    const gz = gzipCpio(writeCpio(entries))
    expect([gz[0], gz[1]]).toEqual([0x1f, 0x8b])
    const plain = execFileSync('gzip', ['-dc'], { input: gz })
    expect(listVerbose(plain)).toHaveLength(10)
  })
})

describe('writeCpio format details', () => {
  it('pads every header+name and every body to 4 bytes and ends with TRAILER!!!', () => {
    const buf = writeCpio(entries)
    let off = 0
    const names: string[] = []
    for (;;) {
      expect(off % 4).toBe(0)
      expect(buf.toString('ascii', off, off + 6)).toBe('070701')
      const field = (i: number) =>
        Number.parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16)
      const size = field(6)
      const namesize = field(11)
      const name = buf.toString('utf8', off + 110, off + 110 + namesize - 1)
      expect(buf[off + 110 + namesize - 1]).toBe(0)
      names.push(name)
      off += Math.ceil((110 + namesize) / 4) * 4
      off += Math.ceil(size / 4) * 4
      if (name === 'TRAILER!!!') break
    }
    expect(off).toBe(buf.length)
    expect(names.at(-1)).toBe('TRAILER!!!')
  })

  it('is reproducible: same entries, same bytes (fixed mtime)', () => {
    expect(writeCpio(entries).equals(writeCpio(entries))).toBe(true)
    expect(writeCpio(entries, { mtime: 1 }).equals(writeCpio(entries))).toBe(false)
  })

  it('refuses duplicate paths, empty components and ..', () => {
    expect(() => writeCpio([...entries, { type: 'file', path: 'etc/a', data: '' }])).toThrow(/listed twice/)
    expect(() => writeCpio([{ type: 'file', path: 'a//b', data: '' }])).toThrow(/bad path/)
    expect(() => writeCpio([{ type: 'file', path: '../etc/passwd', data: '' }])).toThrow(/bad path/)
    expect(() =>
      writeCpio([
        { type: 'dir', path: 'x/y' },
        { type: 'dir', path: 'x' },
      ]),
    ).toThrow(/listed twice/)
  })

  it('stores a leading / as a relative name', () => {
    const buf = writeCpio([{ type: 'file', path: '/init', data: '' }])
    expect(buf.toString('utf8', 110, 115)).toBe('init\0')
  })
})
