import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../src/component/component-type.js'
import { checkInputFile } from '../src/component/input-file.js'
import { fixture } from './fixtures.js'

// Issue 13 items 7, 9: a path that is not a readable regular file is refused at validation,
// naming the property and the path.
describe('checkInputFile', () => {
  const dir = fixture({ 'ok.bin': Uint8Array.of(1, 2, 3) })
  mkdirSync(join(dir, 'sub'))

  const refusal = (path: string) => {
    try {
      checkInputFile('file', 'raw image', path)
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError)
      expect((e as ConfigError).property).toBe('file')
      return (e as Error).message
    }
    throw new Error(`${path} was accepted`)
  }

  it('a regular file: its size', () => {
    expect(checkInputFile('file', 'raw image', join(dir, 'ok.bin'))).toEqual({ size: 3, blockDevice: false })
  })

  it('a directory (and "" resolved to the manifest directory) is refused', () => {
    expect(refusal(join(dir, 'sub'))).toBe(
      `raw image ${join(dir, 'sub')} is a directory, not a file (is the path empty or a typo?)`,
    )
  })

  it('a missing file names the path and ENOENT', () => {
    expect(refusal(join(dir, 'nope'))).toBe(`raw image ${join(dir, 'nope')}: does not exist (ENOENT)`)
    expect(refusal(join(dir, 'ok.bin', 'x'))).toContain('(ENOTDIR)')
  })

  it('a FIFO or a character device is not a file', () => {
    expect(refusal('/dev/null')).toBe('raw image /dev/null is not a regular file')
  })
})
