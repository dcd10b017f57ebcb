// A restore's overrides: one snapshot restored as many clones, each with its own host resources
// (a TAP name, a disk copy, a vsock socket path and CID, a MAC, a shared directory...). A restore
// rebuilds the machine from the snapshot's pinned manifest, so an override is a change to one
// property of one component in that manifest, made before it is resolved: the component type's
// schema validates it as it would a manifest written by hand, and the component is built with it.
// Only what a component is made of on the host side may change: not its type and not its
// resources (addresses, IRQs), which the guest's drivers were set up with.

/** `<component>.<property>` (the property may be a dotted path into it) set to `value`. */
export interface ComponentOverride {
  component: string
  property: string
  value: unknown
}

const FIXED = new Set(['type', 'resources'])

/**
 * Parses `<component>.<property>=<value>` (`vmm restore --set`). The value is read as JSON when it
 * is JSON (7, true, "text", {"a": 1}) and taken as a string otherwise (tap1, /srv/disk.img, a MAC).
 */
export function parseOverride(text: string): ComponentOverride {
  const m = /^([^.=\s]+)\.([^=\s]+)=(.*)$/s.exec(text)
  if (!m) throw new Error(`--set ${text}: expected <component>.<property>=<value>, e.g. net0.tap=tap1`)
  let value: unknown = m[3]
  try {
    value = JSON.parse(m[3]!)
  } catch {}
  return { component: m[1]!, property: m[2]!, value }
}

/** How an override reads in messages. */
export function describeOverride(o: ComponentOverride): string {
  return `${o.component}.${o.property}=${typeof o.value === 'string' ? o.value : JSON.stringify(o.value)}`
}

/**
 * The manifest (as data) with `overrides` applied, a copy; the input is not changed. Refuses, naming
 * the override, a component the manifest does not have (listing those it has) and a property that
 * may not change. What the value must be is the schema's to say, when the result is resolved.
 */
export function applyOverrides(
  manifest: Record<string, unknown>,
  overrides: readonly ComponentOverride[],
): Record<string, unknown> {
  const out = structuredClone(manifest)
  const components = out.components as Record<string, Record<string, unknown>> | undefined
  for (const o of overrides) {
    const c = components?.[o.component]
    if (typeof c !== 'object' || c === null)
      throw new Error(
        `override ${describeOverride(o)}: the snapshot has no component "${o.component}" (it has: ${Object.keys(components ?? {}).join(', ')})`,
      )
    const path = o.property.split('.')
    if (FIXED.has(path[0]!))
      throw new Error(
        `override ${describeOverride(o)}: a component's ${path[0]} cannot change in a restore (the guest was set up with them)`,
      )
    let at: Record<string, unknown> = c
    for (const key of path.slice(0, -1)) {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype')
        throw new Error(`override ${describeOverride(o)}: "${key}" is not a property`)
      const next = at[key]
      if (next === undefined) at[key] = {}
      else if (typeof next !== 'object' || next === null || Array.isArray(next))
        throw new Error(`override ${describeOverride(o)}: ${o.component}.${key} is not an object`)
      at = at[key] as Record<string, unknown>
    }
    const last = path[path.length - 1]!
    if (last === '__proto__' || last === 'constructor' || last === 'prototype')
      throw new Error(`override ${describeOverride(o)}: "${last}" is not a property`)
    at[last] = o.value
  }
  return out
}
