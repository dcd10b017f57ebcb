// @vmm/control: the control plane of a running Machine: typed verbs and events (Controller),
// QMP over a Unix socket (QmpServer) and a QMP client (QmpClient).
export { type ArgSpec, type ArgsSpec, type ArgType, validateArgs } from './args.js'
export { Controller, DEFAULT_VERSION, type Verb, type VersionInfo } from './controller.js'
export { asCommandError, CommandError, type ErrorClass } from './errors.js'
export { type ControlEvent, controlEvents, EVENT_NAMES } from './events.js'
export { QmpClient, QmpError, type QmpEvent } from './qmp/client.js'
export { type Frame, JsonFramer } from './qmp/framing.js'
export { QmpServer, type QmpServerOptions } from './qmp/server.js'
export { parseCommand, QmpInputError } from './qmp/wire.js'
export { runState, VERBS } from './verbs.js'
