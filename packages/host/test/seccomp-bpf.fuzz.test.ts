// Property: for any rule list and any call, the compiled program (run by the BPF interpreter)
// answers what the rules say, computed directly: the compiler's layout (binary search, jumps,
// merged alternatives) never changes a decision.
import { fuzzParameters } from '@vmm/core/testing'
import fc from 'fast-check'
import { describe, it } from 'vitest'
import { type ArgMatch, compile, normalize, RET, type SyscallRule } from '../src/seccomp/bpf.js'
import { SYSCALLS, type SyscallName } from '../src/seccomp/syscalls.js'
import { runFilter } from './seccomp-bpf.js'

const names = Object.keys(SYSCALLS) as SyscallName[]
const TRAP = RET.TRAP | 1

const match = fc.record(
  {
    arg: fc.constantFrom(0, 1, 2, 3, 4, 5) as fc.Arbitrary<ArgMatch['arg']>,
    value: fc.constantFrom(0, 1, 2, 0x10000, 0xae80, 0xffffffff),
    mask: fc.constantFrom(0xffffffff, 0x10000, 0xff00, 3),
  },
  { requiredKeys: ['arg', 'value'] },
)
const rule: fc.Arbitrary<SyscallRule> = fc.record(
  {
    name: fc.constantFrom(...names.slice(0, 40), 'ioctl', 'clone', 'socket'),
    when: fc.array(fc.array(match, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
    errno: fc.constantFrom(1, 38),
  },
  { requiredKeys: ['name'] },
)
const arg = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 0x10000n, 0xae80n, 0xffffffffn, 1n << 32n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
)
const call = fc.record({
  nr: fc.oneof(
    fc.constantFrom(...names.slice(0, 40).map((n) => SYSCALLS[n]), SYSCALLS.ioctl, SYSCALLS.clone),
    fc.nat(600),
  ),
  args: fc.array(arg, { minLength: 6, maxLength: 6 }),
})

/** What the rules say, without BPF. */
function decide(rules: SyscallRule[], c: { nr: number; args: bigint[] }): number {
  const r = normalize(rules).get(c.nr)
  if (!r) return TRAP
  const ok = (m: ArgMatch) =>
    (Number(c.args[m.arg]! & 0xffffffffn) & (m.mask ?? 0xffffffff)) >>> 0 === m.value >>> 0
  const allowed = r.when === undefined || r.when.some((alt) => alt.every(ok))
  if (!allowed) return TRAP
  return r.errno !== undefined ? (RET.ERRNO | r.errno) >>> 0 : RET.ALLOW
}

describe('seccomp BPF compiler (property)', () => {
  it('answers every call as the rules say', () => {
    fc.assert(
      fc.property(
        fc.array(rule, { maxLength: 30 }),
        fc.array(call, { minLength: 1, maxLength: 20 }),
        (rules, calls) => {
          // Rules that contradict (one call both allowed and errno'd) are refused by compile: skip them.
          let program: Uint8Array
          try {
            program = compile(rules, { defaultAction: TRAP, trapData: 1 })
          } catch (e) {
            if (/both allowed and answered/.test(String(e))) return
            throw e
          }
          for (const c of calls) {
            const got = runFilter(program, c)
            const want = decide(rules, c)
            if (got !== want)
              throw new Error(
                `call ${c.nr} args ${c.args}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`,
              )
          }
        },
      ),
      fuzzParameters(),
    )
  })
})
