// The state reader on untrusted text: whatever a snapshot file holds, reading it either gives a
// state of the checked shape or throws a SnapshotError; never another exception, never a hang.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { checkState, decodeState, encodeState, parseHeader, SnapshotError } from '../src/index.js'
import { fuzz } from '../src/testing/index.js'

const onlySnapshotErrors = (f: () => void) => {
  try {
    f()
  } catch (e) {
    if (!(e instanceof SnapshotError)) throw e
  }
}

const tagged = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc
      .jsonValue()
      .filter((j) => !JSON.stringify(j).includes('__proto__'))
      .map((j) => JSON.parse(JSON.stringify(j)) as unknown), // JSON has no -0
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(
      fc.constantFrom('regs', 'sregs', 'vcpus', 'lapic', 'rip', '$bigint', '$bytes', 'x'),
      tie('value'),
      { maxKeys: 4 },
    ),
  ),
})).value

describe('the snapshot state reader (fuzz)', () => {
  it('decodes what it encodes', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(tagged, (v) => {
            expect(decodeState(encodeState(v), 's')).toEqual(v)
          }),
          p,
        ),
      200,
    )
  })

  it('arbitrary or mutated text gives a checked state or a SnapshotError', async () => {
    await fuzz(
      (p) =>
        fc.assert(
          fc.property(
            fc.oneof(fc.string(), fc.json(), tagged.map(encodeState)),
            fc.nat(),
            fc.nat(255),
            (text, at, byte) => {
              const mutated =
                text.length > 0
                  ? text.slice(0, at % text.length) +
                    String.fromCharCode(byte) +
                    text.slice((at % text.length) + 1)
                  : text
              for (const t of [text, mutated]) {
                onlySnapshotErrors(() => checkState(decodeState(t, 'state.json'), 'state.json'))
                onlySnapshotErrors(() => parseHeader(t, 'snapshot.json'))
              }
            },
          ),
          p,
        ),
      300,
    )
  })
})
