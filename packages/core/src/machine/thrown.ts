// Errors that name the component they came from, and a readable text for whatever was thrown.

/** An error of one component's lifecycle step, naming the component; `cause` is what it threw. */
export class ComponentError extends Error {
  override readonly name = 'ComponentError'
  constructor(
    readonly component: string,
    readonly phase: string,
    cause: unknown,
  ) {
    super(`${component}: ${phase} failed: ${describeThrown(cause)}`, { cause })
  }
}

/** What a component threw, readable whatever it was: an Error's message, a string, `null`. */
export function describeThrown(e: unknown): string {
  if (e instanceof Error) return e.message || e.name
  if (typeof e === 'string') return e === '' ? 'an empty string was thrown' : e
  return `a non-error value was thrown: ${e === null ? 'null' : typeof e === 'object' ? (JSON.stringify(e) ?? String(e)) : String(e)}`
}
