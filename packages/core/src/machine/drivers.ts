// The one place each component capability is driven from (see component/capabilities.ts): every
// function takes the components in build order, finds the capability through its guard, and owns
// the order the capability runs in. The machine calls these for the whole machine and for a single
// component it hot-plugs or removes alike.
import {
  isConfigPinner,
  isDisposable,
  isHotpluggable,
  isKernelCmdlineContributor,
  isLoadable,
  isPausable,
  isResettable,
  isShutdownRequester,
  isSnapshottable,
  isStartable,
  isStoppable,
  type LoadContext,
} from '../component/capabilities.js'
import type { BuiltComponent, ComponentTiming } from './types.js'

/** Runs `f` as phase `phase` of component `id`, recording how long it took (Machine.timings). */
export type Timed = <T>(id: string, phase: ComponentTiming['phase'], f: () => T | Promise<T>) => Promise<T>

type Components = readonly BuiltComponent[]

const reversed = (list: Components) => [...list].reverse()

/** KernelCmdlineContributor: the non-empty parameters, in build order (LoadContext.kernelCmdline). */
export function kernelCmdlines(list: Components): string[] {
  const out: string[] = []
  for (const c of list) {
    const i = c.instance
    if (isKernelCmdlineContributor(i) && i.kernelCmdline !== '') out.push(i.kernelCmdline)
  }
  return out
}

/** Loadable, in build order: a loader may rely on what components before it put in memory. */
export async function loadComponents(list: Components, context: LoadContext, timed: Timed): Promise<void> {
  for (const c of list) {
    const i = c.instance
    if (isLoadable(i)) await timed(c.id, 'load', () => i.load(context))
  }
}

/** Startable, in build order: a component starts after what it references. */
export async function startComponents(list: Components, timed: Timed): Promise<void> {
  for (const c of list) {
    const i = c.instance
    if (isStartable(i)) await timed(c.id, 'start', () => i.start())
  }
}

/** Stoppable, in reverse build order; the first that throws ends the walk with its error. */
export async function stopComponents(list: Components, timed: Timed): Promise<void> {
  for (const c of reversed(list)) {
    const i = c.instance
    if (isStoppable(i)) await timed(c.id, 'stop', () => i.stop())
  }
}

/** Pausable.pause, in reverse build order (a device pauses before what it uses). */
export async function pauseComponents(list: Components, timed: Timed): Promise<void> {
  for (const c of reversed(list)) {
    const i = c.instance
    if (isPausable(i)) await timed(c.id, 'pause', () => i.pause())
  }
}

/** Pausable.resume, in build order (what a device uses runs again before it does). */
export async function resumeComponents(list: Components, timed: Timed): Promise<void> {
  for (const c of list) {
    const i = c.instance
    if (isPausable(i)) await timed(c.id, 'resume', () => i.resume())
  }
}

/** Resettable, in build order (Machine.reset): what a device uses is back at power-on before it is. */
export async function resetComponents(list: Components, timed: Timed): Promise<void> {
  for (const c of list) {
    const i = c.instance
    if (isResettable(i)) await timed(c.id, 'reset', () => i.reset())
  }
}

/**
 * Disposable, in reverse build order. Every component gets its turn even when one before it
 * throws; the errors come back, in that order, for the caller to raise.
 */
export async function disposeComponents(list: Components, timed: Timed): Promise<unknown[]> {
  const errors: unknown[] = []
  for (const c of reversed(list)) {
    const i = c.instance
    try {
      if (isDisposable(i)) await timed(c.id, 'dispose', () => i.dispose())
    } catch (e) {
      // Named here: dispose errors are collected, not wrapped by the machine's timer.
      errors.push(
        new Error(`${c.id}: dispose failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e }),
      )
    }
  }
  return errors
}

/** ShutdownRequester: the first component, in build order, that delivered the request; its id. */
export function requestShutdown(list: Components): string | undefined {
  for (const c of list) {
    const i = c.instance
    if (isShutdownRequester(i) && i.requestShutdown()) return c.id
  }
  return undefined
}

/** Hotpluggable.plugged: tells the guest about a component that just joined; others join silently. */
export async function announce(c: BuiltComponent): Promise<void> {
  const i = c.instance
  if (isHotpluggable(i)) await i.plugged()
}

/**
 * Hotpluggable.unplug: asks the guest to let go of `c` and waits for it, at most `timeoutMs`.
 * Rejects for a component that is not Hotpluggable, and when the guest does not answer in time.
 */
export async function release(c: BuiltComponent, timeoutMs: number): Promise<void> {
  const i = c.instance
  if (!isHotpluggable(i)) throw new Error(`${c.id} (${c.type}) cannot be removed from a running machine`)
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the guest did not release ${c.id} within ${timeoutMs / 1000} s`)),
      timeoutMs,
    )
  })
  try {
    await Promise.race([i.unplug(), late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Snapshottable, for the snapshot work to call on a paused machine: quiesces every snapshottable
 * component (reverse build order, as pause), then saves each one's state (build order), keyed by
 * component id. Components that are not Snapshottable are left out.
 */
export async function saveComponentStates(list: Components): Promise<Map<string, unknown>> {
  const snapshottable = list.filter((c) => isSnapshottable(c.instance))
  for (const c of reversed(snapshottable)) {
    const i = c.instance
    if (isSnapshottable(i)) await i.quiesce()
  }
  const states = new Map<string, unknown>()
  for (const c of snapshottable) {
    const i = c.instance
    if (isSnapshottable(i)) states.set(c.id, await i.saveState())
  }
  return states
}

/** ConfigPinner.pinnedConfig of each component that has one, by id, for the snapshot's manifest. */
export function pinnedConfigs(list: Components): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>()
  for (const c of list) if (isConfigPinner(c.instance)) out.set(c.id, c.instance.pinnedConfig())
  return out
}

/**
 * Snapshottable.restoreState, in build order, on a realized machine built from the snapshot's
 * pinned manifest. Every snapshottable component must have a state and every state a
 * snapshottable component: anything else is a snapshot of a different machine.
 */
export async function restoreComponentStates(
  list: Components,
  states: ReadonlyMap<string, unknown>,
): Promise<void> {
  const snapshottable = list.filter((c) => isSnapshottable(c.instance))
  const ids = new Set(snapshottable.map((c) => c.id))
  const missing = snapshottable.filter((c) => !states.has(c.id)).map((c) => c.id)
  const extra = [...states.keys()].filter((id) => !ids.has(id))
  if (missing.length > 0 || extra.length > 0) {
    const parts = [
      ...(missing.length > 0 ? [`no state for ${missing.join(', ')}`] : []),
      ...(extra.length > 0 ? [`state for ${extra.join(', ')}, which cannot restore one`] : []),
    ]
    throw new Error(`the snapshot does not fit this machine: ${parts.join('; ')}`)
  }
  for (const c of snapshottable) {
    const i = c.instance
    if (isSnapshottable(i)) await i.restoreState(states.get(c.id))
  }
}
