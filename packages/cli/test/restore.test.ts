// `vmm restore` refuses bad snapshot directories with the snapshot reader's error (the file and
// what is wrong) and status 1, before any machine exists. The run of a good snapshot is tested
// through the library on /dev/kvm (packages/kvm/test/snapshot.kvm.test.ts).
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const vmm = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' })
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

describe('vmm restore', () => {
  it('refuses a missing directory, a foreign version and a half-written one, naming the file', () => {
    const root = fs.mkdtempSync(join(os.tmpdir(), 'vmm-cli-restore-'))
    dirs.push(root)
    let r = vmm('restore', join(root, 'none'), '--hypervisor', 'test')
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(`${join(root, 'none')}: no such snapshot directory`)
    fs.mkdirSync(join(root, 'v9'))
    fs.writeFileSync(join(root, 'v9', 'snapshot.json'), '{"format":"vmm-snapshot","version":9}')
    r = vmm('restore', join(root, 'v9'), '--hypervisor', 'test')
    expect(r.status).toBe(1)
    expect(r.stderr).toContain(
      `${join(root, 'v9', 'snapshot.json')}: format version 9; this vmm reads version 1 only`,
    )
    fs.mkdirSync(join(root, 'half'))
    r = vmm('restore', join(root, 'half'), '--hypervisor', 'test')
    expect(r.stderr).toMatch(/snapshot\.json: missing: not a snapshot directory/)
  })

  it('refuses a malformed override as a usage error, naming it, before reading the snapshot', () => {
    let r = vmm('restore', '/nonexistent', '--set', 'net0tap=x', '--hypervisor', 'test')
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('--set net0tap=x: expected <component>.<property>=<value>')
    r = vmm('restore', '/nonexistent', '--tap', 'tap7', '--hypervisor', 'test')
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('--tap tap7: expected <component>=<value>')
  })

  it('needs a directory', () => {
    const r = vmm('restore')
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('restore needs a snapshot directory')
  })
})
