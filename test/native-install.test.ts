// The install step of the native addons (packages/{kvm,host}/scripts/install.mjs) when neither a
// prebuilt binary nor a build works: it must fail the install naming what is missing and how to
// get it. Run on a copy of @vmm/host without its build, so nothing of the workspace changes.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const copy = mkdtempSync(join(tmpdir(), 'vmm-install-'))
afterAll(() => rmSync(copy, { recursive: true, force: true }))

test('both addons share one install script and one prebuild script', () => {
  for (const f of ['install.mjs', 'prebuild.mjs'])
    expect(readFileSync(join(root, 'packages/kvm/scripts', f), 'utf8')).toBe(
      readFileSync(join(root, 'packages/host/scripts', f), 'utf8'),
    )
})

test('without a prebuilt binary and without a compiler the install fails saying what to install', () => {
  for (const f of ['package.json', 'binding.gyp', 'scripts'])
    cpSync(join(root, 'packages/host', f), join(copy, f), { recursive: true })
  const r = spawnSync(process.execPath, ['scripts/install.mjs'], {
    cwd: copy,
    encoding: 'utf8',
    env: { ...process.env, CXX: 'no-such-c++-compiler' },
  })
  expect(r.status).toBe(1)
  expect(r.stderr).toContain('@vmm/host: cannot install the native module vmm_host.node for linux-x64')
  expect(r.stderr).toContain('a C++20 compiler (no-such-c++-compiler)')
  expect(r.stderr).toContain('apt-get install python3 make g++')
  expect(r.stderr).toContain('--hypervisor test')
})

test('the prebuilt binary, when it loads, is all the install needs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmm-install-prebuilt-'))
  try {
    for (const f of ['package.json', 'binding.gyp', 'scripts'])
      cpSync(join(root, 'packages/host', f), join(dir, f), { recursive: true })
    cpSync(
      join(root, 'packages/host/build/Release/vmm_host.node'),
      join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'vmm_host.node'),
    )
    const r = spawnSync(process.execPath, ['scripts/install.mjs'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, CXX: 'no-such-c++-compiler' },
    })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
