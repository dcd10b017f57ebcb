import { chmodSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type JsonSchema, SchemaCache } from '../src/index.js'
import { validatorCacheDir } from '../src/manifest/schema.js'
import { fixture } from './fixtures.js'

// A plugin-like schema: not precompiled, so it is compiled with ajv and cached on disk.
const schema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 2 }, // minLength: ajv's code requires a runtime helper
    mode: { enum: ['a', 'b'], default: 'a' },
  },
}

function check(validate: (d: unknown) => boolean, errors: () => unknown) {
  const good: Record<string, unknown> = { name: 'xy' }
  expect(validate(good)).toBe(true)
  expect(good).toEqual({ name: 'xy', mode: 'a' }) // defaults filled
  expect(validate({ name: 'x', extra: 1 })).toBe(false)
  return errors()
}

describe('validator cache', () => {
  it('a second run imports the cached module and validates exactly as ajv did', async () => {
    const dir = fixture({})
    const first = await new SchemaCache(dir).validator(schema)
    const errorsFirst = check(first, () => first.errors)
    expect(readdirSync(dir).filter((f) => f.endsWith('.mjs'))).toHaveLength(1)
    const second = await new SchemaCache(dir).validator(schema)
    expect(second).not.toBe(first)
    expect(check(second, () => second.errors)).toEqual(errorsFirst)
  })

  it('ignores a cache file for another schema, and an unusable cache directory', async () => {
    const dir = fixture({})
    await new SchemaCache(dir).validator(schema)
    const [file] = readdirSync(dir)
    writeFileSync(join(dir, file!), 'export const source = "{}"; export const validate = () => true\n')
    const v = await new SchemaCache(dir).validator(schema)
    expect(v({})).toBe(false) // compiled again, not the planted validator
    const ro = fixture({})
    chmodSync(ro, 0o500)
    const w = await new SchemaCache(join(ro, 'sub')).validator(schema)
    expect(w({ name: 'xy' })).toBe(true)
    expect((await new SchemaCache(undefined).validator(schema))({ name: 1 })).toBe(false)
  })

  it('lives in $VMM_CACHE_DIR, $XDG_CACHE_HOME/vmm or ~/.cache/vmm; VMM_CACHE_DIR=off turns it off', () => {
    expect(validatorCacheDir({ VMM_CACHE_DIR: '/c' })).toBe('/c/validators')
    expect(validatorCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/vmm/validators')
    expect(validatorCacheDir({ VMM_CACHE_DIR: 'off', XDG_CACHE_HOME: '/x' })).toBeUndefined()
    expect(validatorCacheDir({})).toMatch(/\.cache\/vmm\/validators$/)
  })
})
