// `vmm restore`'s override options (a clone's own host resources), kept apart from restore.ts so
// main.ts can declare them without loading @vmm/core. --set is the general form
// (<component>.<property>=<value>, checked by the component type's schema); the others are short
// for the properties a clone most often changes.
export const RESTORE_OVERRIDE_OPTIONS = {
  set: { type: 'string', multiple: true },
  tap: { type: 'string', multiple: true },
  disk: { type: 'string', multiple: true },
  vsock: { type: 'string', multiple: true },
  cid: { type: 'string', multiple: true },
  mac: { type: 'string', multiple: true },
} as const

/** What each short option sets: `--tap net0=tap1` is `--set net0.tap=tap1`. */
const SHORT: Record<string, string> = { tap: 'tap', disk: 'path', vsock: 'path', cid: 'cid', mac: 'mac' }

/** Every override as `<component>.<property>=<value>` text, --set first, in the order given. */
export function overrideTexts(values: Record<string, unknown>): string[] {
  const out = [...((values.set as string[] | undefined) ?? [])]
  for (const [option, property] of Object.entries(SHORT))
    for (const text of (values[option] as string[] | undefined) ?? []) {
      const m = /^([^.=\s]+)=(.*)$/s.exec(text)
      if (!m) throw new Error(`--${option} ${text}: expected <component>=<value>, e.g. --${option} net0=...`)
      out.push(`${m[1]}.${property}=${m[2]}`)
    }
  return out
}
