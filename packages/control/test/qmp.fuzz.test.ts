// Properties of the QMP input path: the stream framer, the command parser and argument
// validation. `pnpm fuzz` runs them with VMM_FUZZ_RUNS cases.
import { fuzz } from '@vmm/core/testing'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CommandError,
  Controller,
  JsonFramer,
  parseCommand,
  QmpInputError,
  VERBS,
  validateArgs,
} from '../src/index.js'
import { runningMachine } from './fixtures.js'

/** Splits `bytes` at the given cut points (any number, any place). */
const chunked = (bytes: Buffer, cuts: number[]) => {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let prev = 0
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c))
    prev = c
  }
  return out
}

const separator = fc.constantFrom('', ' ', '\n', '\r\n', '\t', '\x1b', '\x04', '\x00')

describe('the QMP framer', () => {
  it('gives back exactly the objects sent, however the stream is cut and whatever lies between them', async () => {
    await fuzz((p) =>
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.dictionary(fc.string(), fc.jsonValue()), separator), { maxLength: 6 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (objects, cuts) => {
            const text = objects.map(([o, sep]) => JSON.stringify(o) + sep).join('')
            const framer = new JsonFramer()
            const frames = chunked(Buffer.from(text), cuts).flatMap((c) => framer.push(c))
            expect(frames.map((f) => (f.kind === 'text' ? JSON.parse(f.text) : f))).toEqual(
              objects.map(([o]) => JSON.parse(JSON.stringify(o))),
            ) // -0 is 0 on the wire
          },
        ),
        p,
      ),
    )
  })

  it('never throws on arbitrary bytes and never returns a text over its limit', async () => {
    await fuzz((p) =>
      fc.assert(
        fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), (chunks) => {
          const framer = new JsonFramer(64)
          for (const c of chunks)
            for (const f of framer.push(Buffer.from(c))) // Each byte decodes to at most one UTF-16 unit, so a text within 64 bytes is within 64 units.
              if (f.kind === 'text') expect(f.text.length).toBeLessThanOrEqual(64)
        }),
        p,
      ),
    )
  })
})

describe('the QMP command parser', () => {
  it('returns a command with a string execute, or throws a QmpInputError, for any text', async () => {
    const input = fc.oneof(
      fc.string(),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc
        .record(
          { execute: fc.jsonValue(), arguments: fc.jsonValue(), id: fc.jsonValue() },
          { requiredKeys: [] },
        )
        .map((v) => JSON.stringify(v)),
    )
    await fuzz((p) =>
      fc.assert(
        fc.property(input, (text) => {
          try {
            const c = parseCommand(text)
            expect(typeof c.execute).toBe('string')
            if (c.arguments !== undefined) expect(typeof c.arguments).toBe('object')
          } catch (e) {
            expect(e).toBeInstanceOf(QmpInputError)
          }
        }),
        p,
      ),
    )
  })
})

describe('argument validation', () => {
  it('accepts only the declared names with their types, or throws a GenericError naming the command', async () => {
    const names = Object.keys(VERBS)
    await fuzz((p) =>
      fc.assert(
        fc.property(
          fc.constantFrom(...names),
          fc.oneof(fc.jsonValue(), fc.dictionary(fc.string(), fc.jsonValue())),
          (name, raw) => {
            const spec = VERBS[name]!.args
            try {
              const out = validateArgs(name, spec, raw)
              for (const [k, v] of Object.entries(out)) {
                if (!Object.hasOwn(spec.args, k)) expect(spec.rest).toBe(true)
                else expect(v).not.toBeUndefined()
              }
              expect(Object.getPrototypeOf(out)).toBe(Object.prototype)
            } catch (e) {
              expect(e).toBeInstanceOf(CommandError)
              expect((e as CommandError).errorClass).toBe('GenericError')
              expect((e as Error).message.startsWith(`${name}:`)).toBe(true)
            }
          },
        ),
        p,
      ),
    )
  })

  describe('on a running machine', () => {
    let c: Controller
    beforeAll(async () => {
      c = new Controller(await runningMachine())
    })
    afterAll(() => c.machine.dispose())
    it('changes nothing when a command gets an argument it does not declare', async () => {
      const names = Object.keys(VERBS).filter((n) => !VERBS[n]!.args.rest)
      await fuzz(
        (p) =>
          fc.assert(
            fc.asyncProperty(
              fc.constantFrom(...names),
              fc.string({ minLength: 1 }),
              fc.jsonValue(),
              async (name, key, value) => {
                fc.pre(!Object.hasOwn(VERBS[name]!.args.args, key))
                await expect(c.execute(name, { [key]: value })).rejects.toThrow(/is unexpected/)
                expect(c.machine.state).toBe('running')
                expect(c.machine.components.map((b) => b.id)).toEqual(['guest'])
              },
            ),
            p,
          ),
        100,
      )
    })
  })
})
