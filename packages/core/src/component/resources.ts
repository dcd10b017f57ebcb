import type { InterruptLine } from '../irq/interrupt-line.js'

/** An allocated window of ports or guest physical addresses. */
export interface Window {
  readonly kind: 'pio' | 'mmio'
  readonly base: number
  readonly size: number
}

/** A component's allocated resources, by the names its type requested them under. */
export class ComponentResources {
  constructor(
    readonly owner: string,
    private readonly windows: ReadonlyMap<string, Window>,
    private readonly irqs: ReadonlyMap<string, InterruptLine>,
  ) {}

  window(name: string): Window {
    const w = this.windows.get(name)
    if (!w) throw new Error(`${this.owner} has no window "${name}"`)
    return w
  }

  irq(name: string): InterruptLine {
    const l = this.irqs.get(name)
    if (!l) throw new Error(`${this.owner} has no interrupt line "${name}"`)
    return l
  }

  /** Every window, for mapping the component onto its buses. */
  allWindows(): [string, Window][] {
    return [...this.windows]
  }
}
