// Hooks as runtime-spec config.md "POSIX-platform Hooks" says: the state JSON on stdin, args with
// args[0] as argv[0], env, a timeout; a failing hook's error names the hook and its output.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { runHook, runHooks } from '../src/hooks.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmm-oci-hooks-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const state = { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 42, bundle: '/b' }

describe('hooks', () => {
  it('get the state on stdin, their args and env', async () => {
    const out = join(dir, 'out')
    await runHook(
      {
        path: '/bin/sh',
        args: ['sh', '-c', `cat > ${out}; echo "$0 $1 $GREETING" >> ${out}`, 'arg1'],
        env: ['GREETING=hi'],
      },
      state,
      'prestart',
      0,
    )
    const [json, line] = readFileSync(out, 'utf8').split(/(?<=\})/)
    expect(JSON.parse(json!)).toEqual(state)
    // sh -c SCRIPT arg1: arg1 is $0 and $1 is empty.
    expect(line!.trim()).toBe('arg1  hi')
  })

  it('a failing hook names itself, its status and output; the list stops there', async () => {
    const marker = join(dir, 'second-ran')
    await expect(
      runHooks(
        [
          { path: '/bin/sh', args: ['sh', '-c', 'echo broken >&2; exit 7'] },
          { path: '/bin/sh', args: ['sh', '-c', `touch ${marker}`] },
        ],
        state,
        'createRuntime',
      ),
    ).rejects.toThrow('error running createRuntime hook #0 (/bin/sh): exit status 7, output: broken')
    expect(() => readFileSync(marker)).toThrow()
  })

  it('a hook past its timeout is killed and reported', async () => {
    await expect(
      runHook({ path: '/bin/sleep', args: ['sleep', '30'], timeout: 1 }, state, 'poststart', 2),
    ).rejects.toThrow('error running poststart hook #2 (/bin/sleep): timed out after 1 s')
  })

  it('a hook that does not exist', async () => {
    writeFileSync(join(dir, 'x'), '')
    await expect(runHook({ path: join(dir, 'nope') }, state, 'poststop', 0)).rejects.toThrow(
      `error running poststop hook #0 (${join(dir, 'nope')}): spawn ${join(dir, 'nope')} ENOENT`,
    )
  })
})
