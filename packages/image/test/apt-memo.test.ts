import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { aptSignature, rememberedAnswer } from '../src/apt-memo.js'

describe('apt answers remembered while apt inputs stay the same', () => {
  const dirs: string[] = []
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })
  const scratch = () => {
    const d = mkdtempSync(join(tmpdir(), 'apt-memo-'))
    dirs.push(d)
    return d
  }

  it('asks once, then answers from the memo until an input changes', async () => {
    const d = scratch()
    const lists = join(d, 'lists')
    writeFileSync(lists, 'Package: busybox-static\n')
    const inputs = [lists, join(d, 'absent')]
    let asked = 0
    const ask = async (q: string) => `${q} v${++asked}`
    const memo = join(d, 'memo')
    expect(await rememberedAnswer(memo, 'candidate a', ask, aptSignature(inputs))).toBe('candidate a v1')
    expect(await rememberedAnswer(memo, 'candidate a', ask, aptSignature(inputs))).toBe('candidate a v1')
    // A second question is asked and kept beside the first.
    expect(await rememberedAnswer(memo, 'candidate b', ask, aptSignature(inputs))).toBe('candidate b v2')
    expect(await rememberedAnswer(memo, 'candidate a', ask, aptSignature(inputs))).toBe('candidate a v1')
    expect(asked).toBe(2)
    // `apt-get update`: the list's mtime moves, so every answer is asked again.
    utimesSync(lists, new Date(2030, 0, 1), new Date(2030, 0, 1))
    expect(await rememberedAnswer(memo, 'candidate a', ask, aptSignature(inputs))).toBe('candidate a v3')
    // An input that appears changes the signature too.
    writeFileSync(join(d, 'absent'), 'Pin: release a=bookworm\n')
    expect(await rememberedAnswer(memo, 'candidate a', ask, aptSignature(inputs))).toBe('candidate a v4')
    expect(JSON.parse(readFileSync(join(memo, 'apt-answers.json'), 'utf8')).answers).toEqual({
      'candidate a': 'candidate a v4',
    })
  })

  it('a corrupt memo is asked around and replaced, and an error from apt is not remembered', async () => {
    const d = scratch()
    writeFileSync(join(d, 'apt-answers.json'), '{"signature": 3')
    expect(await rememberedAnswer(d, 'q', async () => 'fresh', 'sig')).toBe('fresh')
    await expect(
      rememberedAnswer(d, 'r', async () => Promise.reject(new Error('apt knows no candidate')), 'sig'),
    ).rejects.toThrow('apt knows no candidate')
    expect(JSON.parse(readFileSync(join(d, 'apt-answers.json'), 'utf8'))).toEqual({
      signature: 'sig',
      answers: { q: 'fresh' },
    })
  })
})
