import 'reflect-metadata'
import { Container, ContainerModule, inject, injectable } from 'inversify'
import { describe, expect, it } from 'vitest'
import { referenceToken, Tokens } from '../src/component/tokens.js'

// Vitest's transform emits no decorator metadata, so this only works because every constructor
// parameter carries an explicit @inject: the rule every component follows.
@injectable()
class Uart {
  constructor(
    @inject(Tokens.Config) readonly config: { baud: number },
    @inject(Tokens.Id) readonly id: string,
  ) {}
}

@injectable()
class Modem {
  constructor(@inject(referenceToken('uart')) readonly uart: Uart) {}
}

describe('InversifyJS under vitest', () => {
  it('builds components in child containers with explicit tokens and no metadata', () => {
    const root = new Container({ defaultScope: 'Singleton' })
    const uartScope = new Container({ parent: root })
    uartScope.bind(Tokens.Config).toConstantValue({ baud: 115200 })
    uartScope.bind(Tokens.Id).toConstantValue('uart0')
    uartScope.load(new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Uart)))
    const uart = uartScope.get<Uart>(Tokens.Component)
    expect(uart).toBeInstanceOf(Uart)
    expect(uart.config.baud).toBe(115200)
    expect(uart.id).toBe('uart0')

    const modemScope = new Container({ parent: root })
    modemScope.bind(referenceToken('uart')).toConstantValue(uart)
    modemScope.load(new ContainerModule(({ bind }) => void bind(Tokens.Component).to(Modem)))
    expect(modemScope.get<Modem>(Tokens.Component).uart).toBe(uart)
  })

  it('keeps components constructible with new for unit tests', () => {
    expect(new Modem(new Uart({ baud: 9600 }, 'u')).uart.config.baud).toBe(9600)
  })
})
