/**
 * What a device needs to raise an interrupt: a level it sets and clears (level-triggered, e.g. an
 * ISA IRQ behind the in-kernel IOAPIC), or a pulse (edge-triggered). The line does not say where it
 * goes; the machine wires it to the hypervisor's irqchip.
 */
export interface InterruptLine {
  /** The GSI / IRQ number the line drives, for messages and tables (MP, ACPI). */
  readonly irq: number
  setLevel(high: boolean): void
  /** Raise then lower: an edge. */
  pulse(): void
}

/** An InterruptLine that forwards to a `setIrq(irq, level)` function such as VirtualMachine.setIrqLine. */
export class IrqChipLine implements InterruptLine {
  constructor(
    readonly irq: number,
    private readonly setIrq: (irq: number, level: boolean) => void,
  ) {}

  setLevel(high: boolean): void {
    this.setIrq(this.irq, high)
  }

  pulse(): void {
    this.setIrq(this.irq, true)
    this.setIrq(this.irq, false)
  }
}
