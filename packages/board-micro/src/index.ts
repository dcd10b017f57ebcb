// @vmm/board-micro: the parts of a Firecracker-class machine, as a vmm plugin. A manifest that
// lists it under `plugins:` can use the component types below (examples/micro.yaml).
import type { PLUGIN_API_VERSION, PluginRegistry } from '@vmm/core'
import { bootTimerType } from './devices/boot-timer/index.js'
import { i8042Type } from './devices/i8042/index.js'
import { cmosRtcType } from './devices/rtc/index.js'
import { serialType } from './devices/serial/index.js'
import { linuxType } from './linux.js'

export { type BzImage, isBzImage, parseBzImage } from './boot/bzimage.js'
export { BOOT_MSRS, type CpuidEntry, vcpuCpuid, wireLints } from './boot/cpu.js'
export { type ElfKernel, isElf, parseElf } from './boot/elf.js'
export { BootError, type BootErrorCode } from './boot/errors.js'
export { checkInitrd } from './boot/initrd.js'
export { type BootLayout, defaultLayout } from './boot/layout.js'
export { bootVcpuState, type LinuxBootInput, type LinuxBootPlan, loadLinux } from './boot/linux.js'
export { writeMpTable } from './boot/mptable.js'
export { e820Map, PVH_MAGIC, writeStartInfo, writeZeroPage } from './boot/params.js'
export { BOOT_TIMER_MAGIC, BootTimer, bootTimerType } from './devices/boot-timer/index.js'
export { CTRL_ALT_DEL, I8042, I8042Controller, i8042Type, POWER_KEY } from './devices/i8042/index.js'
export {
  A_UIP,
  B_24H,
  B_AIE,
  B_DM_BINARY,
  B_PIE,
  B_SET,
  B_UIE,
  C_AF,
  C_IRQF,
  C_PF,
  C_UF,
  CmosRtc,
  type CmosRtcConfig,
  cmosRtcType,
  hostClock,
  Mc146818,
  periodicIntervalMs,
  REG_A,
  REG_B,
  REG_C,
  REG_CENTURY,
  REG_D,
  type RtcClock,
  rtcStartMs,
} from './devices/rtc/index.js'
export {
  GUEST_PANIC_EXIT_CODE,
  RX_FIFO_SIZE,
  Serial,
  type SerialConfig,
  serialType,
  Uart16550,
} from './devices/serial/index.js'
export { Linux, type LinuxBootInputs, type LinuxConfig, linuxType } from './linux.js'

export const vmmPluginApi: typeof PLUGIN_API_VERSION = 1

export function register(registry: PluginRegistry): void {
  registry.register(linuxType)
  registry.register(serialType)
  registry.register(i8042Type)
  registry.register(bootTimerType)
  registry.register(cmosRtcType)
}
