// The V8 code cache of the built bundles (src/code-cache.ts): a body runs as the module it replaces,
// the cache is written at exit and used by the next process, and a cache that is missing,
// foreign or unwritable only means compiling from source.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { codeCacheDir } from '../src/code-cache.js'

const work = mkdtempSync(join(tmpdir(), 'vmm-code-cache-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

// A body as scripts/code-cache.mjs writes one: CommonJS shape, the facade's import.meta and import().
const body = join(work, 'pkg/index.body.cjs')
mkdirSync(join(work, 'pkg'))
writeFileSync(
  body,
  `"use strict";
  const { basename } = require("node:path");
  const ext = require("ext-esm");
  exports.answer = () => 42 + ext.offset;
  exports.where = () => [basename(__filename), __vmmImportMetaUrl];
  exports.load = (s) => __vmmImport(s);`,
)
writeFileSync(join(work, 'pkg/dep.mjs'), 'export const dep = "relative to the facade"')
describe('loadWithCodeCache', () => {
  it('caches under VMM_CACHE_DIR, XDG_CACHE_HOME or ~/.cache, and is off with VMM_CACHE_DIR=off', () => {
    expect(codeCacheDir({ VMM_CACHE_DIR: '/c' })).toBe('/c/code')
    expect(codeCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/vmm/code')
    expect(codeCacheDir({ VMM_CACHE_DIR: 'off' })).toBeUndefined()
  })

  it('runs the body as the facade module, writes the cache at exit and uses it next time', async () => {
    const { loadWithCodeCache, codeCacheLoads } = await import('../src/code-cache.js')
    const cache = join(work, 'cache')
    const env = { VMM_CACHE_DIR: cache }
    const moduleUrl = pathToFileURL(join(work, 'pkg/index.mjs')).href
    const m = loadWithCodeCache(
      pathToFileURL(body),
      moduleUrl,
      (s) => import(new URL(s, moduleUrl).href),
      { 'ext-esm': { offset: 1 } },
      env,
    ) as { answer(): number; where(): [string, string]; load(s: string): Promise<{ dep: string }> }
    expect(m.answer()).toBe(43)
    expect(m.where()).toEqual(['index.mjs', moduleUrl])
    expect((await m.load('./dep.mjs')).dep).toBe('relative to the facade')
    expect(codeCacheLoads.at(-1)?.cache).toBe('absent') // written at exit: the next test's children
  })
})

describe('the built bundles (pnpm build)', () => {
  const core = join(import.meta.dirname, '../dist/index.js')
  const script = `
    import * as core from ${JSON.stringify(pathToFileURL(core).href)}
    import { codeCacheLoads } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../dist/code-cache.js')).href)}
    console.log(JSON.stringify({ n: Object.keys(core).length, machine: typeof core.Machine, cache: codeCacheLoads.map((l) => l.cache) }))
  `
  const child = (env: Record<string, string>) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    return JSON.parse(r.stdout) as { n: number; machine: string; cache: string[] }
  }

  it('compiles from source, writes the cache at exit, and the next process uses it', () => {
    const cache = join(work, 'built')
    const first = child({ VMM_CACHE_DIR: cache })
    expect(first.machine).toBe('function')
    expect(first.cache).toEqual(['absent'])
    expect(readdirSync(join(cache, 'code')).filter((f) => f.endsWith('.v8'))).toHaveLength(1)
    expect(child({ VMM_CACHE_DIR: cache })).toEqual({ ...first, cache: ['used'] })
  })

  it("a rebuilt body's cache replaces the old one, and another body's stays", () => {
    const cache = join(work, 'rebuilt')
    mkdirSync(join(cache, 'code'), { recursive: true })
    const bodyKey = /^(index-[0-9a-f]+-)/
    child({ VMM_CACHE_DIR: cache })
    const [file] = readdirSync(join(cache, 'code'))
    const prefix = bodyKey.exec(file as string)?.[1]
    writeFileSync(join(cache, 'code', `${prefix}0ld.v8`), 'an earlier build')
    writeFileSync(join(cache, 'code', 'index-0ther-0ld.v8'), 'another body')
    rmSync(join(cache, 'code', file as string))
    expect(child({ VMM_CACHE_DIR: cache }).cache).toEqual(['absent'])
    expect(readdirSync(join(cache, 'code')).sort()).toEqual([file, 'index-0ther-0ld.v8'].sort())
  })

  it('a cache V8 refuses is replaced; an unwritable cache directory changes nothing', () => {
    const cache = join(work, 'foreign')
    child({ VMM_CACHE_DIR: cache })
    const [file] = readdirSync(join(cache, 'code'))
    writeFileSync(join(cache, 'code', file as string), 'not a code cache')
    expect(child({ VMM_CACHE_DIR: cache }).cache).toEqual(['rejected'])
    expect(child({ VMM_CACHE_DIR: cache }).cache).toEqual(['used'])
    const locked = join(work, 'locked')
    mkdirSync(locked)
    chmodSync(locked, 0o500)
    // root writes anyway; a file in the way of the directory fails for everyone
    writeFileSync(join(locked, 'code'), 'a file where the directory would go')
    expect(child({ VMM_CACHE_DIR: locked }).cache).toEqual(['absent'])
    expect(child({ VMM_CACHE_DIR: 'off' }).cache).toEqual(['off'])
  })
})
