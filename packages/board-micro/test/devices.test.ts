// The legacy devices against their datasheets, with a recording interrupt line: no VM needed.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ComponentRegistry,
  type InterruptLine,
  Machine,
  type PluginRegistry,
  registerBuiltins,
} from '@vmm/core'
import { TestHypervisor } from '@vmm/core/testing'
import { describe, expect, it } from 'vitest'
import {
  BootTimer,
  CTRL_ALT_DEL,
  type I8042,
  I8042Controller,
  POWER_KEY,
  RX_FIFO_SIZE,
  register,
  type Serial,
  Uart16550,
} from '../src/index.js'

function line() {
  const events: string[] = []
  let level = false
  const irq: InterruptLine = {
    irq: 4,
    setLevel(high) {
      level = high
      events.push(high ? 'high' : 'low')
    },
    pulse() {
      events.push('pulse')
    },
  }
  return { irq, events, level: () => level }
}

function uart() {
  const l = line()
  const out: number[] = []
  const u = new Uart16550(l.irq, { write: (b) => out.push(...b) })
  const rd = (off: number) => {
    const d = new Uint8Array(1)
    u.read(off, d)
    return d[0]!
  }
  const wr = (off: number, v: number) => u.write(off, Uint8Array.of(v))
  return { u, l, out, rd, wr }
}

describe('16550A UART', () => {
  it('transmits THR writes to the console and reports an empty transmitter', () => {
    const { out, rd, wr } = uart()
    for (const c of 'hi') wr(0, c.charCodeAt(0))
    expect(String.fromCharCode(...out)).toBe('hi')
    expect(rd(5) & 0x60).toBe(0x60) // THRE | TEMT
  })

  it('goes back to its power-on registers at a machine reset and lowers its line', () => {
    const { u, l, rd, wr } = uart()
    const powerOn = u.saveState()
    wr(3, 0x83) // DLAB, 8N1
    wr(0, 0x01) // divisor 1: 115200 baud
    wr(3, 0x03)
    wr(1, 0x03) // IER: received data, THR empty
    wr(4, 0x0b) // MCR: DTR, RTS, OUT2
    wr(7, 0x5a)
    u.receive(Uint8Array.of(0x41, 0x42))
    expect(l.level()).toBe(true)
    expect(u.saveState()).not.toEqual(powerOn)
    u.reset()
    expect(u.saveState()).toEqual(powerOn)
    expect(l.level()).toBe(false)
    expect(rd(2) & 1).toBe(1) // IIR: nothing pending
    expect(rd(5) & 1).toBe(0) // LSR: no data ready; the FIFO is empty
    expect(u.rxSpace).toBe(RX_FIFO_SIZE)
  })

  it('latches the divisor behind DLAB without touching THR or IER', () => {
    const { out, rd, wr } = uart()
    wr(3, 0x80) // DLAB
    wr(0, 0x01)
    wr(1, 0x00)
    expect(rd(0)).toBe(1)
    expect(rd(1)).toBe(0)
    wr(3, 0x03)
    expect(out).toEqual([])
    expect(rd(1)).toBe(0) // IER untouched
  })

  it('keeps the scratch register (how Linux detects a 16450 or better)', () => {
    const { rd, wr } = uart()
    wr(7, 0xa5)
    expect(rd(7)).toBe(0xa5)
  })

  it('raises RDA for received data, clears it when the FIFO drains, and reports FIFOs in IIR', () => {
    const { u, l, rd, wr } = uart()
    wr(2, 0x07) // enable + clear FIFOs
    wr(1, 0x01) // IER: RDA
    expect(l.level()).toBe(false)
    expect(u.receive(Uint8Array.of(0x41, 0x42))).toBe(2)
    expect(l.level()).toBe(true)
    expect(rd(2)).toBe(0xc4) // FIFOs enabled, RDA
    expect(rd(5) & 1).toBe(1)
    expect(rd(0)).toBe(0x41)
    expect(rd(0)).toBe(0x42)
    expect(rd(5) & 1).toBe(0)
    expect(l.level()).toBe(false)
    expect(rd(2)).toBe(0xc1)
  })

  it('accepts at most a FIFO of input and tells the host when there is room again', () => {
    const l = line()
    let room = 0
    const u = new Uart16550(l.irq, { write: () => {} }, () => room++)
    expect(u.receive(new Uint8Array(40))).toBe(RX_FIFO_SIZE)
    expect(u.rxSpace).toBe(0)
    const d = new Uint8Array(1)
    for (let i = 0; i < RX_FIFO_SIZE; i++) u.read(0, d)
    expect(room).toBe(1)
    expect(u.rxSpace).toBe(RX_FIFO_SIZE)
  })

  it('raises THRE when enabled with an empty THR; reading IIR acknowledges it; a write re-arms it', () => {
    const { l, rd, wr } = uart()
    wr(1, 0x02)
    expect(l.level()).toBe(true)
    expect(rd(2) & 0x0f).toBe(0x02)
    expect(l.level()).toBe(false)
    expect(rd(2) & 0x0f).toBe(0x01)
    wr(0, 0x58)
    expect(l.level()).toBe(true)
  })

  it('gives received data priority over THRE', () => {
    const { u, rd, wr } = uart()
    wr(1, 0x03)
    u.receive(Uint8Array.of(1))
    expect(rd(2) & 0x0f).toBe(0x04)
  })

  it('loops transmitted bytes back to the receiver and modem outputs to inputs in loopback', () => {
    const { out, rd, wr } = uart()
    wr(4, 0x10 | 0x0f) // loop + DTR RTS OUT1 OUT2
    wr(0, 0x5a)
    expect(out).toEqual([])
    expect(rd(5) & 1).toBe(1)
    expect(rd(0)).toBe(0x5a)
    expect(rd(6) & 0xf0).toBe(0xf0)
    wr(4, 0x10)
    expect(rd(6) & 0xf0).toBe(0)
  })

  it('touches the interrupt line only when the level changes', () => {
    const { l, wr } = uart()
    wr(1, 0x02)
    wr(0, 1)
    wr(0, 2)
    expect(l.events).toEqual(['high'])
  })
})

describe('i8042', () => {
  function ctl() {
    const l = line()
    let resets = 0
    const c = new I8042Controller(l.irq, () => resets++)
    return { c, l, resets: () => resets }
  }

  it('resets the machine on command 0xFE (Linux reboot=k)', () => {
    const { c, resets } = ctl()
    c.writeCommand(0xfe)
    expect(resets()).toBe(1)
  })

  it('resets when the output port is written with the reset line low', () => {
    const { c, resets } = ctl()
    c.writeCommand(0xd1)
    c.writeData(0x01)
    expect(resets()).toBe(0)
    c.writeCommand(0xd1)
    c.writeData(0x00)
    expect(resets()).toBe(1)
  })

  it('answers self-test and reads back the command byte', () => {
    const { c } = ctl()
    c.writeCommand(0xaa)
    expect(c.readStatus() & 1).toBe(1)
    expect(c.readData()).toBe(0x55)
    c.writeCommand(0x60)
    c.writeData(0x45)
    c.writeCommand(0x20)
    expect(c.readData()).toBe(0x45)
    expect(c.readStatus() & 1).toBe(0)
  })

  it('delivers Ctrl-Alt-Del byte by byte, one IRQ 1 pulse each', () => {
    const { c, l } = ctl()
    c.keyboard(CTRL_ALT_DEL)
    const got: number[] = []
    while (c.readStatus() & 1) got.push(c.readData())
    expect(got).toEqual(CTRL_ALT_DEL)
    expect(l.events.filter((e) => e === 'pulse')).toHaveLength(CTRL_ALT_DEL.length)
  })

  it('acknowledges keyboard commands the way atkbd probing expects', () => {
    const { c } = ctl()
    c.writeData(0xf2)
    expect([c.readData(), c.readData(), c.readData()]).toEqual([0xfa, 0xab, 0x83])
  })
})

describe('a clean shutdown request (Machine.requestShutdown, vmm run on SIGTERM)', () => {
  async function spinning(withI8042: boolean) {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-shutdown-'))
    writeFileSync(join(dir, 'spin.bin'), Uint8Array.of(0xeb, 0xfe)) // jmp $
    const registry = registerBuiltins(new ComponentRegistry())
    register(registry as unknown as PluginRegistry)
    return Machine.fromObject(
      {
        machine: { memory: '1MiB', irqchip: true },
        components: {
          guest: { type: 'raw-image', file: join(dir, 'spin.bin'), address: 0x7c00 },
          ...(withI8042 ? { i8042: { type: 'i8042', resources: { ports: 0x60, irq: 1 } } } : {}),
        },
      },
      { hypervisor: new TestHypervisor(), registry },
    )
  }

  it('goes to the i8042 as Ctrl-Alt-Del while the machine runs, and to nobody when nothing can ask', async () => {
    const m = await spinning(true)
    try {
      expect(m.requestShutdown()).toBeUndefined() // not running yet
      await m.load()
      await m.start()
      expect(m.requestShutdown()).toBe('i8042')
      const c = m.component<I8042>('i8042').controller
      const got: number[] = []
      while (c.readStatus() & 1) got.push(c.readData())
      expect(got).toEqual(POWER_KEY)
      expect(POWER_KEY).toEqual([0xe0, 0x37, 0xe0, 0xf0, 0x37]) // set 2: E0 37 make, E0 F0 37 break
      await m.stop()
    } finally {
      await m.dispose()
    }
    const bare = await spinning(false)
    try {
      await bare.load()
      await bare.start()
      expect(bare.requestShutdown()).toBeUndefined()
      await bare.stop()
    } finally {
      await bare.dispose()
    }
  })
})

describe('boot timer', () => {
  it('records the time once, on the byte 123 at offset 0', () => {
    const reports: unknown[] = []
    const t = new BootTimer(
      { log: false },
      {
        guestStopped: () => {},
        requestStop: () => {},
        report: (source, name, data) => reports.push([source, name, data]),
      },
      'timer',
    )
    const seen: number[] = []
    t.onBoot((ms) => seen.push(ms))
    t.write(0, Uint8Array.of(7))
    t.write(1, Uint8Array.of(123))
    expect(t.bootMs).toBeUndefined()
    t.write(0, Uint8Array.of(123))
    t.write(0, Uint8Array.of(123))
    expect(seen).toHaveLength(1)
    expect(t.bootMs).toBeGreaterThan(0)
    expect(reports).toEqual([['timer', 'boot-time', { ms: t.bootMs }]])
  })
})

describe('a paused machine', () => {
  it('i8042: a key pressed while held raises no IRQ 1 and waits in order for release', () => {
    const l = line()
    const c = new I8042Controller(l.irq, () => {})
    c.hold(true)
    c.keyboard(POWER_KEY)
    expect(c.readStatus() & 1).toBe(0)
    expect(l.events).toEqual([])
    c.hold(false)
    const got: number[] = []
    while (c.readStatus() & 1) got.push(c.readData())
    expect(got).toEqual(POWER_KEY)
    expect(l.events.filter((e) => e === 'pulse')).toHaveLength(POWER_KEY.length)
  })

  it('serial: console input sent while paused stays out of the UART until resume', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-serial-pause-'))
    writeFileSync(join(dir, 'spin.bin'), Uint8Array.of(0xeb, 0xfe)) // jmp $
    const path = join(dir, 'console.sock')
    const registry = registerBuiltins(new ComponentRegistry())
    register(registry as unknown as PluginRegistry)
    const m = await Machine.fromObject(
      {
        machine: { memory: '1MiB', irqchip: true },
        components: {
          guest: { type: 'raw-image', file: join(dir, 'spin.bin'), address: 0x7c00 },
          serial: { type: 'serial', console: 'socket', path, resources: { port: 0x3f8, irq: 4 } },
        },
      },
      { hypervisor: new TestHypervisor(), registry },
    )
    const client = connect(path)
    try {
      await m.load()
      await m.start()
      await new Promise((r) => client.once('connect', r))
      const serial = m.component<Serial>('serial')
      const lsr = () => {
        const d = new Uint8Array(1)
        serial.read(5, d)
        return d[0]!
      }
      serial.write(1, Uint8Array.of(0x01)) // IER: received-data interrupt on
      await m.pause()
      client.write('abc')
      await new Promise((r) => setTimeout(r, 150))
      expect(lsr() & 1).toBe(0) // no data ready: nothing reached the UART (nor its IRQ)
      await m.resume()
      await new Promise((r) => setTimeout(r, 50))
      expect(lsr() & 1).toBe(1)
      const got: number[] = []
      while (lsr() & 1) {
        const d = new Uint8Array(1)
        serial.read(0, d)
        got.push(d[0]!)
      }
      expect(String.fromCharCode(...got)).toBe('abc')
      await m.stop()
    } finally {
      client.destroy()
      await m.dispose()
    }
  })
})
