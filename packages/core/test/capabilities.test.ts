import { describe, expect, it } from 'vitest'
import {
  isDisposable,
  isHotpluggable,
  isKernelCmdlineContributor,
  isLoadable,
  isPausable,
  isShutdownRequester,
  isSnapshottable,
  isStartable,
  isStoppable,
  type LoadContext,
} from '../src/component/capabilities.js'
import { ComponentResources } from '../src/component/resources.js'
import { RawImage } from '../src/components/raw-image/index.js'
import * as drive from '../src/machine/drivers.js'
import type { BuiltComponent, ComponentTiming } from '../src/machine/types.js'

const fn = () => {}

describe('capability guards', () => {
  const cases: [string, (x: unknown) => boolean, object, object[]][] = [
    ['isLoadable', isLoadable, { load: fn }, [{ load: 1 }]],
    ['isStartable', isStartable, { start: fn }, [{ stop: fn }]],
    ['isStoppable', isStoppable, { stop: fn }, [{ start: fn }]],
    // Pausing without resuming would leave a component stuck: both or it is not Pausable.
    ['isPausable', isPausable, { pause: fn, resume: fn }, [{ pause: fn }, { resume: fn }]],
    [
      'isSnapshottable',
      isSnapshottable,
      { quiesce: fn, saveState: fn, restoreState: fn },
      [
        { saveState: fn, restoreState: fn },
        { quiesce: fn, restoreState: fn },
        { quiesce: fn, saveState: fn },
      ],
    ],
    ['isHotpluggable', isHotpluggable, { plugged: fn, unplug: fn }, [{ plugged: fn }, { unplug: fn }]],
    ['isShutdownRequester', isShutdownRequester, { requestShutdown: fn }, [{ requestShutdown: true }]],
    [
      'isKernelCmdlineContributor',
      isKernelCmdlineContributor,
      { kernelCmdline: 'virtio_mmio.device=4K@0xd0000000:5' },
      [{ kernelCmdline: 42 }, { kernelCmdline: fn }],
    ],
    ['isDisposable', isDisposable, { dispose: fn }, [{ dispose: 'yes' }]],
  ]

  it.each(cases)('%s accepts what has the capability and nothing else', (_name, guard, yes, nos) => {
    expect(guard(yes)).toBe(true)
    for (const no of [...nos, {}, null, undefined, 'load', 7, fn]) expect(guard(no)).toBe(false)
  })

  it('finds methods on the prototype and accessors, as a component class has them', () => {
    class Device {
      get kernelCmdline(): string {
        return 'x=1'
      }
      pause(): void {}
      resume(): void {}
    }
    const d = new Device()
    expect(isPausable(d)).toBe(true)
    expect(isKernelCmdlineContributor(d)).toBe(true)
    expect(isStartable(d)).toBe(false)
  })

  it('looks at the instance when asked, so a method added later counts', () => {
    const c: Record<string, unknown> = {}
    expect(isStoppable(c)).toBe(false)
    c.stop = fn
    expect(isStoppable(c)).toBe(true)
  })

  it('sees a built-in component by its methods alone', () => {
    const image = Object.create(RawImage.prototype) as unknown
    expect(isLoadable(image)).toBe(true)
    expect(isPausable(image)).toBe(false)
  })
})

/** A component whose every call lands in `log` as "<id>.<method>". */
function recorder(id: string, log: string[], methods: string[], extra: Record<string, unknown> = {}) {
  const instance: Record<string, unknown> = { ...extra }
  for (const m of methods) {
    instance[m] = (...args: unknown[]) => {
      log.push(`${id}.${m}`)
      return (extra[`${m}Result`] as ((...a: unknown[]) => unknown) | undefined)?.(...args)
    }
  }
  return built(id, instance)
}

function built(id: string, instance: unknown): BuiltComponent {
  return { id, type: 'test', instance, resources: new ComponentResources(id, new Map(), new Map()) }
}

function timer() {
  const timings: ComponentTiming[] = []
  const timed: drive.Timed = async (id, phase, f) => {
    try {
      return await f()
    } finally {
      timings.push({ id, phase, ms: 0 })
    }
  }
  return { timings, timed }
}

describe('capability drivers', () => {
  it('start and resume in build order, stop and pause in reverse, each only where the guard says', async () => {
    const log: string[] = []
    const list = [
      recorder('a', log, ['start', 'stop', 'pause', 'resume']),
      recorder('b', log, ['start', 'pause']), // pause without resume: not Pausable
      recorder('c', log, ['stop', 'pause', 'resume']),
    ]
    const { timings, timed } = timer()
    await drive.startComponents(list, timed)
    await drive.pauseComponents(list, timed)
    await drive.resumeComponents(list, timed)
    await drive.stopComponents(list, timed)
    expect(log).toEqual([
      'a.start',
      'b.start',
      'c.pause',
      'a.pause',
      'a.resume',
      'c.resume',
      'c.stop',
      'a.stop',
    ])
    expect(timings.map((t) => `${t.id}:${t.phase}`)).toEqual(log.map((l) => l.replace('.', ':')))
  })

  it('stops at the first component that cannot stop, with its error', async () => {
    const log: string[] = []
    const list = [
      recorder('a', log, ['stop']),
      built('b', {
        stop() {
          throw new Error('stuck')
        },
      }),
    ]
    await expect(drive.stopComponents(list, timer().timed)).rejects.toThrow('stuck')
    expect(log).toEqual([])
  })

  it('disposes every component in reverse order even when some throw, returning the errors', async () => {
    const log: string[] = []
    const boom = (id: string) =>
      built(id, {
        dispose() {
          log.push(`${id}.dispose`)
          throw new Error(`${id} failed`)
        },
      })
    const list = [recorder('a', log, ['dispose']), boom('b'), built('plain', {}), boom('c')]
    const errors = await drive.disposeComponents(list, timer().timed)
    expect(log).toEqual(['c.dispose', 'b.dispose', 'a.dispose'])
    expect(errors.map((e) => (e as Error).message)).toEqual([
      'c: dispose failed: c failed',
      'b: dispose failed: b failed',
    ])
    expect(errors.map((e) => ((e as Error).cause as Error).message)).toEqual(['c failed', 'b failed'])
  })

  it('loads in build order with one context and collects the non-empty command-line parameters', async () => {
    const seen: [string, LoadContext][] = []
    const loader = (id: string) => built(id, { load: (c: LoadContext) => void seen.push([id, c]) })
    const list = [
      built('mmio0', { kernelCmdline: 'virtio_mmio.device=4K@0xd0000000:5' }),
      loader('kernel'),
      built('empty', { kernelCmdline: '' }),
      loader('initrd'),
      built('mmio1', { kernelCmdline: 'virtio_mmio.device=4K@0xd0001000:6' }),
    ]
    const kernelCmdline = drive.kernelCmdlines(list)
    expect(kernelCmdline).toEqual([
      'virtio_mmio.device=4K@0xd0000000:5',
      'virtio_mmio.device=4K@0xd0001000:6',
    ])
    const context = { memory: {} as never, vcpus: [], kernelCmdline }
    const { timings, timed } = timer()
    await drive.loadComponents(list, context, timed)
    expect(seen).toEqual([
      ['kernel', context],
      ['initrd', context],
    ])
    expect(timings.map((t) => `${t.id}:${t.phase}`)).toEqual(['kernel:load', 'initrd:load'])
  })

  it('asks the first component that can deliver a shutdown request, in build order', () => {
    const log: string[] = []
    const list = [
      built('none', {}),
      recorder('declines', log, ['requestShutdown'], { requestShutdownResult: () => false }),
      recorder('acpi', log, ['requestShutdown'], { requestShutdownResult: () => true }),
      recorder('i8042', log, ['requestShutdown'], { requestShutdownResult: () => true }),
    ]
    expect(drive.requestShutdown(list)).toBe('acpi')
    expect(log).toEqual(['declines.requestShutdown', 'acpi.requestShutdown'])
    expect(drive.requestShutdown([built('none', {})])).toBeUndefined()
  })

  it('announces only Hotpluggable components and releases only them, within the time given', async () => {
    const log: string[] = []
    let letGo!: () => void
    const pci = built('pci-dev', {
      plugged: () => void log.push('plugged'),
      unplug: () => new Promise<void>((r) => (letGo = r)),
    })
    await drive.announce(pci)
    await drive.announce(built('plain', { plugged: fn })) // plugged without unplug: not Hotpluggable
    expect(log).toEqual(['plugged'])

    await expect(drive.release({ ...built('plain', {}), type: 'debugcon' }, 1000)).rejects.toThrow(
      'plain (debugcon) cannot be removed from a running machine',
    )
    await expect(drive.release(pci, 20)).rejects.toThrow('the guest did not release pci-dev within 0.02 s')
    const released = drive.release(pci, 1000)
    letGo()
    await expect(released).resolves.toBeUndefined()
  })

  it('saves the snapshottable components: every quiesce first (reverse order), then each state by id', async () => {
    const log: string[] = []
    const snap = (id: string, state: unknown) =>
      recorder(id, log, ['quiesce', 'saveState', 'restoreState'], { saveStateResult: () => state })
    const list = [snap('a', { regs: [1, 2] }), built('plain', {}), snap('b', 'b-state')]
    const states = await drive.saveComponentStates(list)
    expect(log).toEqual(['b.quiesce', 'a.quiesce', 'a.saveState', 'b.saveState'])
    expect([...states]).toEqual([
      ['a', { regs: [1, 2] }],
      ['b', 'b-state'],
    ])
  })

  it('restores each state onto its component, and refuses a snapshot of another machine', async () => {
    const restored: [string, unknown][] = []
    const snap = (id: string) =>
      built(id, { quiesce: fn, saveState: fn, restoreState: (s: unknown) => void restored.push([id, s]) })
    const list = [snap('a'), built('plain', {}), snap('b')]
    await drive.restoreComponentStates(
      list,
      new Map<string, unknown>([
        ['b', 2],
        ['a', 1],
      ]),
    )
    expect(restored).toEqual([
      ['a', 1],
      ['b', 2],
    ])
    await expect(drive.restoreComponentStates(list, new Map([['a', 1]]))).rejects.toThrow(
      'the snapshot does not fit this machine: no state for b',
    )
    await expect(
      drive.restoreComponentStates(
        list,
        new Map([
          ['a', 1],
          ['b', 2],
          ['plain', 3],
        ]),
      ),
    ).rejects.toThrow('state for plain, which cannot restore one')
  })
})
