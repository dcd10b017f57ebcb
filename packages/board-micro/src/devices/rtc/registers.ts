// The MC146818A's register numbers and bits (the chip is ./device.ts). Register map and bit meanings from the MC146818A datasheet ("Address Map",
// "Register A".."Register D") as the Intel PCH datasheets keep them for the PC's RTC:
//   0x00 seconds  0x01 seconds alarm  0x02 minutes  0x03 minutes alarm  0x04 hours  0x05 hours alarm
//   0x06 day of week (1 = Sunday)  0x07 day of month  0x08 month  0x09 year (00-99)
//   0x0A register A: UIP (7, read-only), divider DV (6:4, 010 = 32.768 kHz running), rate RS (3:0)
//   0x0B register B: SET (7), PIE (6), AIE (5), UIE (4), SQWE (3), DM binary (2), 24/12 (1), DSE (0)
//   0x0C register C (read-only, cleared by reading): IRQF (7), PF (6), AF (5), UF (4)
//   0x0D register D: VRT (7), the battery is good
//   0x0E-0x7F: battery-backed RAM; 0x32 is the century (the FADT's CENTURY field points at it).

export const REG_SECONDS = 0x00
export const REG_SECONDS_ALARM = 0x01
export const REG_MINUTES = 0x02
export const REG_MINUTES_ALARM = 0x03
export const REG_HOURS = 0x04
export const REG_HOURS_ALARM = 0x05
export const REG_DAY_OF_WEEK = 0x06
export const REG_DAY_OF_MONTH = 0x07
export const REG_MONTH = 0x08
export const REG_YEAR = 0x09
export const REG_A = 0x0a
export const REG_B = 0x0b
export const REG_C = 0x0c
export const REG_D = 0x0d
/** The century byte, where the IBM PC/AT BIOS keeps it (the FADT's CENTURY names this index). */
export const REG_CENTURY = 0x32

export const A_UIP = 0x80
export const A_DV_MASK = 0x70
/** DV = 010: the 32.768 kHz time base, dividers running. 11x holds the divider chain in reset. */
export const A_DV_RUNNING = 0x20
export const A_RS_MASK = 0x0f

export const B_SET = 0x80
export const B_PIE = 0x40
export const B_AIE = 0x20
export const B_UIE = 0x10
export const B_DM_BINARY = 0x04
export const B_24H = 0x02

export const C_IRQF = 0x80
export const C_PF = 0x40
export const C_AF = 0x20
export const C_UF = 0x10

export const D_VRT = 0x80
/** Alarm bytes with both top bits set match every value ("don't care"). */
export const ALARM_ANY = 0xc0
