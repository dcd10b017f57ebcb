// The addon loader's order and its error when nothing loads (src/addon.ts).
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, test } from 'vitest'
import { addonCandidates, loadAddon } from '../src/addon.js'

const built = fileURLToPath(new URL('../build/Release/vmm_host.node', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'vmm-addon-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('a local build is tried before the prebuilt binary', () => {
  expect(addonCandidates('/p', 'x')).toEqual([
    '/p/build/Release/x.node',
    `/p/prebuilds/${process.platform}-${process.arch}/x.node`,
  ])
})

test('with neither, the error names each place, why it failed, and how to build', () => {
  const empty = join(dir, 'empty')
  mkdirSync(join(empty, 'prebuilds', `${process.platform}-${process.arch}`), { recursive: true })
  writeFileSync(
    join(empty, 'prebuilds', `${process.platform}-${process.arch}`, 'vmm_host.node'),
    'not an ELF file',
  )
  expect(() => loadAddon('@vmm/host', empty, 'vmm_host')).toThrow(
    /@vmm\/host: no native module loads here .*build\/Release\/vmm_host\.node: not there; prebuilds\/.*vmm_host\.node: .*vmm_host\.node: file too short\).*npm install-scripts approve @vmm\/host.*apt-get install python3 make g\+\+/,
  )
})

test('the prebuilt binary loads when there is no local build', () => {
  const pkg = join(dir, 'prebuilt')
  mkdirSync(join(pkg, 'prebuilds', `${process.platform}-${process.arch}`), { recursive: true })
  cpSync(built, join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'vmm_host.node'))
  const binding = loadAddon<{ eventfd: unknown }>('@vmm/host', pkg, 'vmm_host')
  expect(typeof binding.eventfd).toBe('function')
})
