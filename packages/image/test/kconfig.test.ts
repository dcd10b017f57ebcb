// The fragment parser, the check of a built .config against it, and our fragment itself.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { FRAGMENT_PATH } from '../src/guest.js'
import { checkKconfig, describeMismatches, parseKconfig } from '../src/kconfig.js'
import { requireFragmentHonoured } from '../src/kernel.js'

describe('parseKconfig', () => {
  it('reads y/m/numbers/strings, "is not set" as n, and skips comments', () => {
    const m = parseKconfig(
      [
        '# a comment',
        'CONFIG_A=y',
        'CONFIG_B=m',
        '',
        '# CONFIG_C is not set',
        'CONFIG_D=0x10',
        'CONFIG_E="a b"',
      ].join('\n'),
    )
    expect([...m]).toEqual([
      ['CONFIG_A', 'y'],
      ['CONFIG_B', 'm'],
      ['CONFIG_C', 'n'],
      ['CONFIG_D', '0x10'],
      ['CONFIG_E', '"a b"'],
    ])
  })

  it('rejects lines a typo made meaningless, naming the line', () => {
    expect(() => parseKconfig('CONFIG_A=y\nCONFIG_B y', 'frag')).toThrow('frag:2: not a kconfig line')
    expect(() => parseKconfig('#CONFIG_A is not set', 'frag')).toThrow('frag:1: malformed "is not set"')
    expect(() => parseKconfig('CONFIG_A=', 'frag')).toThrow('frag:1: CONFIG_A has an empty value')
    expect(() => parseKconfig('CONFIG_A=y\n# CONFIG_A is not set', 'frag')).toThrow(
      'frag:2: CONFIG_A is set twice',
    )
  })

  it('reads a kernel-written .config leniently', () => {
    const m = parseKconfig(
      '#\n# Automatically generated file\nCONFIG_CC_VERSION_TEXT="gcc"\nweird\n',
      '.config',
      false,
    )
    expect(m.get('CONFIG_CC_VERSION_TEXT')).toBe('"gcc"')
  })
})

describe('checkKconfig', () => {
  const fragment = parseKconfig(
    'CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_D=y\nCONFIG_E=5',
  )

  it('accepts a .config that honours every option (absent counts as not set)', () => {
    const final = parseKconfig(
      'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=y\nCONFIG_E=5\nCONFIG_X=y',
      '',
      false,
    )
    expect(checkKconfig(fragment, final)).toEqual([])
  })

  it('lists options kconfig dropped, changed, or turned on', () => {
    const final = parseKconfig('CONFIG_B=y\n# CONFIG_D is not set\nCONFIG_E=6', '', false)
    const mismatches = checkKconfig(fragment, final)
    expect(mismatches).toEqual([
      { option: 'CONFIG_A', wanted: 'y', got: undefined },
      { option: 'CONFIG_B', wanted: 'n', got: 'y' },
      { option: 'CONFIG_D', wanted: 'y', got: 'n' },
      { option: 'CONFIG_E', wanted: '5', got: '6' },
    ])
    expect(describeMismatches(mismatches)).toBe(
      [
        '  CONFIG_A: wanted =y, got absent',
        '  CONFIG_B: wanted not set, got =y',
        '  CONFIG_D: wanted =y, got not set',
        '  CONFIG_E: wanted =5, got =6',
      ].join('\n'),
    )
  })

  it('requireFragmentHonoured fails loudly with the list', () => {
    expect(() => requireFragmentHonoured('CONFIG_A=y\nCONFIG_B=y', 'CONFIG_A=y\n', 'micro.config')).toThrow(
      /1 option\(s\) of micro.config.*\n {2}CONFIG_B: wanted =y, got absent/,
    )
    expect(() => requireFragmentHonoured('CONFIG_A=y', 'CONFIG_A=y\n', 'micro.config')).not.toThrow()
  })
})

describe('kernel/micro.config', () => {
  const fragment = parseKconfig(readFileSync(FRAGMENT_PATH, 'utf8'), FRAGMENT_PATH)

  it('asks for everything a micro VM needs (host-kvm.md, issue 4) and no modules', () => {
    // Kconfig symbol names: the RTC is RTC_DRV_CMOS, ext4 is EXT4_FS.
    // biome-ignore format: one word per option reads better packed
    const required = [
      '64BIT', 'SMP', 'PRINTK', 'EARLY_PRINTK', 'SERIAL_8250', 'SERIAL_8250_CONSOLE', 'BLK_DEV_INITRD',
      'RD_GZIP', 'PVH', 'KVM_GUEST', 'PARAVIRT', 'VIRTIO_MMIO', 'VIRTIO_MMIO_CMDLINE_DEVICES', 'VIRTIO_BLK',
      'VIRTIO_NET', 'VIRTIO_CONSOLE', 'HW_RANDOM_VIRTIO', 'VIRTIO_BALLOON', 'VSOCKETS', 'VIRTIO_VSOCKETS',
      'PCI', 'VIRTIO_PCI', 'ACPI', 'EXT4_FS', 'NET', 'INET', 'UNIX', 'PACKET', 'X86_MPPARSE', 'RTC_DRV_CMOS',
      'SERIO_I8042', 'KEYBOARD_ATKBD', 'DEVTMPFS', 'DEVTMPFS_MOUNT', 'TMPFS', 'BINFMT_ELF', 'BINFMT_SCRIPT',
      'TTY', 'PROC_FS', 'SYSFS', 'DEVMEM', 'HPET_TIMER',
    ]
    const notY = required.filter((o) => fragment.get(`CONFIG_${o}`) !== 'y')
    expect(notY).toEqual([])
    expect(fragment.get('CONFIG_MODULES')).toBe('n')
  })
})
