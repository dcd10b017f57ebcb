// `vmm jail`'s policy, without root or /dev/kvm (unit tier): option checking, the package walk
// (pnpm-style links), the plan's tidying and text, the environment it passes. What the jail does
// on a real host is in jail.kvm.test.ts and test/e2e/micro-jail.test.ts.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jailEnv, lookupPackage, packageClosure, planText, tidyBinds, tidyLinks } from '@vmm/host/jail'
import { describe, expect, it } from 'vitest'
import { parseJailArgs } from '../src/jail/args.js'
import { manifestBinds, manifestPaths } from '../src/jail/manifest-paths.js'

const ok = ['--id', 'vm1', '--uid', '1000', '--gid', '1000']

describe('vmm jail options', () => {
  it('reads ids, limits and the VMM command after --, with --qmp made absolute', () => {
    const o = parseJailArgs([
      ...ok,
      '--cgroup',
      'memory.limit_in_bytes=512MiB',
      '--cgroup',
      'cpu.shares=512',
      '--rlimit',
      'nofile=100:200',
      '--',
      'run',
      'm.yaml',
      '--qmp',
      'vm.qmp',
      '--timings',
    ])
    expect(o).toMatchObject({
      id: 'vm1',
      uid: 1000,
      gid: 1000,
      chrootBase: '/srv/vmm-jail',
      command: 'run',
      target: join(process.cwd(), 'm.yaml'),
      qmp: join(process.cwd(), 'vm.qmp'),
      vmmArgs: ['--qmp', join(process.cwd(), 'vm.qmp'), '--timings'],
      cgroups: [
        { file: 'memory.limit_in_bytes', value: '512MiB' },
        { file: 'cpu.shares', value: '512' },
      ],
      rlimits: [{ name: 'nofile', soft: '100', hard: '200' }],
      daemonize: false,
    })
    expect(parseJailArgs([...ok, '--', 'restore', '/srv/snap']).command).toBe('restore')
    expect(parseJailArgs([...ok, '--', 'run', 'm.yaml']).rlimits).toEqual([
      { name: 'nofile', soft: '2048', hard: '2048' },
    ])
  })

  it('refuses bad input, naming it', () => {
    const bad = (args: string[]) => () => parseJailArgs(args)
    expect(bad(['--id', 'x', '--uid', '1', '--gid', '1'])).toThrow('needs the VMM command after `--`')
    expect(bad(['--uid', '1', '--gid', '1', '--', 'run', 'm'])).toThrow('needs --id')
    expect(bad(['--id', '../x', '--uid', '1', '--gid', '1', '--', 'run', 'm'])).toThrow(
      '--id "../x": use letters',
    )
    expect(bad(['--id', 'x', '--gid', '1', '--', 'run', 'm'])).toThrow('needs --uid')
    expect(bad(['--id', 'x', '--uid', 'root', '--gid', '1', '--', 'run', 'm'])).toThrow(
      '--uid must be a number',
    )
    expect(bad(['--id', 'x', '--uid', '0', '--gid', '1', '--', 'run', 'm'])).toThrow(
      "would keep root's privileges",
    )
    expect(
      parseJailArgs(['--id', 'x', '--uid', '0', '--gid', '0', '--allow-root', '--', 'run', 'm']).uid,
    ).toBe(0)
    expect(bad([...ok, '--cgroup', 'memory', '--', 'run', 'm'])).toThrow('--cgroup "memory": expected')
    expect(bad([...ok, '--rlimit', 'files=3', '--', 'run', 'm'])).toThrow('--rlimit "files=3"')
    expect(bad([...ok, '--', 'validate', 'm'])).toThrow('runs `run <manifest>` or `restore <dir>`')
    expect(bad([...ok, '--', 'run'])).toThrow('needs a manifest file')
    expect(bad([...ok, '--', 'run', 'a\tb.yaml', '--qmp', 'x\ty'])).toThrow('a TAB, newline or NUL')
  })
})

describe('the package walk', () => {
  it('follows runtime dependencies through node_modules links, as Node resolves them, and records the links', () => {
    // A pnpm-like tree: app -> node_modules/lib (a link into .pnpm), lib -> its sibling dep.
    const root = mkdtempSync(join(tmpdir(), 'vmm-jail-walk-'))
    const pkg = (dir: string, deps: Record<string, string>) => {
      mkdirSync(dir, { recursive: true })
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name: dir, dependencies: deps, devDependencies: { dev: '1' } }),
      )
    }
    pkg(join(root, 'app'), { lib: '1', missing: '1' })
    pkg(join(root, 'store/lib@1/node_modules/lib'), { dep: '1' })
    pkg(join(root, 'store/dep@1/node_modules/dep'), {})
    pkg(join(root, 'store/dev/node_modules/dev'), {})
    mkdirSync(join(root, 'app/node_modules'))
    symlinkSync('../../store/lib@1/node_modules/lib', join(root, 'app/node_modules/lib'))
    symlinkSync('../../dev/node_modules/dev', join(root, 'app/node_modules/dev'))
    symlinkSync('../../dep@1/node_modules/dep', join(root, 'store/lib@1/node_modules/dep'))
    const { dirs, links } = packageClosure([join(root, 'app')])
    expect(dirs).toEqual(
      [
        join(root, 'app'),
        join(root, 'store/dep@1/node_modules/dep'),
        join(root, 'store/lib@1/node_modules/lib'),
      ].sort(),
    )
    expect(links).toEqual(
      expect.arrayContaining([
        { path: join(root, 'app/node_modules/lib'), target: '../../store/lib@1/node_modules/lib' },
        { path: join(root, 'store/lib@1/node_modules/dep'), target: '../../dep@1/node_modules/dep' },
      ]),
    )
    expect(links).toHaveLength(2) // not the devDependency's
    // A directory whose node_modules is itself a link (as the e2e manifests' are): both links, each
    // where it really is, so that made again in the jail they lead to the same places.
    mkdirSync(join(root, 'manifests'))
    symlinkSync('../app/node_modules', join(root, 'manifests/node_modules'))
    expect(lookupPackage('lib', join(root, 'manifests'))).toEqual({
      dir: join(root, 'store/lib@1/node_modules/lib'),
      links: [
        { path: join(root, 'manifests/node_modules'), target: '../app/node_modules' },
        { path: join(root, 'app/node_modules/lib'), target: '../../store/lib@1/node_modules/lib' },
      ],
    })
  })
})

describe('the plan', () => {
  it('keeps one bind per place, parents first, without what an identity bind above already shows', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-plan-'))
    mkdirSync(join(dir, 'pkg/sub'), { recursive: true })
    const binds = tidyBinds([
      { source: join(dir, 'pkg/sub'), target: join(dir, 'pkg/sub'), readOnly: true },
      { source: join(dir, 'pkg'), target: join(dir, 'pkg'), readOnly: true },
      { source: '/usr/lib/libc.so.6', target: '/lib/libc.so.6', readOnly: true },
      { source: '/usr/lib/libc.so.6', target: '/lib/libc.so.6', readOnly: true },
      { source: join(dir, 'pkg/sub'), target: join(dir, 'pkg/sub'), readOnly: false },
    ])
    expect(binds).toEqual([
      { source: '/usr/lib/libc.so.6', target: '/lib/libc.so.6', readOnly: true },
      { source: join(dir, 'pkg'), target: join(dir, 'pkg'), readOnly: true },
      // Read-write wins for one place, and is not covered by the read-only bind above.
      { source: join(dir, 'pkg/sub'), target: join(dir, 'pkg/sub'), readOnly: false },
    ])
    expect(
      tidyLinks(
        [
          { path: join(dir, 'pkg/node_modules/x'), target: '../x' },
          { path: join(dir, 'other/node_modules/x'), target: '../x' },
        ],
        binds,
      ),
    ).toEqual([{ path: join(dir, 'other/node_modules/x'), target: '../x' }])
  })

  it('is TAB-separated records, and refuses a field that would break them', () => {
    const plan = {
      root: '/srv/vmm-jail/a/root',
      uid: 1,
      gid: 2,
      hostname: 'a',
      binds: [{ source: '/s', target: '/t', readOnly: true }],
      links: [{ path: '/l', target: '../x' }],
      devices: [{ path: '/dev/kvm', major: 10, minor: 232, mode: 0o600, owned: true }],
      cgroupDirs: ['/sys/fs/cgroup/memory/vmm-jail-a'],
      rlimits: [{ name: 'nofile', soft: '2048', hard: '2048' }],
      cwd: '/',
      env: ['HOME=/'],
      exec: ['/usr/bin/node', 'node', 'main.js', 'run', '/m.yaml'],
    }
    expect(planText(plan)).toBe(
      [
        'root\t/srv/vmm-jail/a/root',
        'ids\t1\t2',
        'hostname\ta',
        'rlimit\tnofile\t2048\t2048',
        'cgroup\t/sys/fs/cgroup/memory/vmm-jail-a/cgroup.procs',
        'bind\t/s\t/t\tro',
        'symlink\t../x\t/l',
        'dev\t/dev/kvm\t10\t232\t600\towned',
        'proc',
        'cwd\t/',
        'env\tHOME=/',
        'exec\t/usr/bin/node\tnode\tmain.js\trun\t/m.yaml',
        '',
      ].join('\n'),
    )
    expect(() => planText({ ...plan, exec: [...plan.exec, '--qmp', 'a\nb'] })).toThrow(
      'a TAB, newline or NUL',
    )
    // The default jail's records: drop-late, an idmapped read-write bind, the kept capabilities.
    const late = planText({
      ...plan,
      binds: [{ source: '/d', target: '/d', readOnly: false, idmap: { uid: 0, gid: 0 } }],
      dropLate: true,
      caps: [0, 1, 27],
    })
    expect(late).toContain('bind\t/d\t/d\trw\tidmap\t0\t0\n')
    expect(late).toContain('cwd\t/\ndrop-late\ncaps\t0\t1\t27\n')
    expect(planText(plan)).not.toMatch(/drop-late|caps|idmap/)
  })

  it('an idmapped bind is not hidden by a plain one above it, nor the reverse', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-tidy-'))
    const file = join(dir, 'f')
    writeFileSync(file, '')
    const up = { source: dir, target: dir, readOnly: false, idmap: { uid: 0, gid: 0 } }
    const below = { source: file, target: file, readOnly: false }
    expect(tidyBinds([up, below])).toEqual([up, below])
    expect(tidyBinds([up, { ...below, idmap: { uid: 0, gid: 0 } }])).toEqual([up])
    rmSync(dir, { recursive: true })
  })

  it('passes the VMM only the environment it needs', () => {
    expect(
      jailEnv({
        TERM: 'xterm',
        SECRET_TOKEN: 'x',
        PATH: '/bin',
        VMM_TRACE_EMULATION: '1',
        LD_PRELOAD: '/evil.so',
      }),
    ).toEqual(['HOME=/', 'VMM_CACHE_DIR=off', 'VMM_JAILED=1', 'TERM=xterm', 'VMM_TRACE_EMULATION=1'])
  })
})

describe('the paths a manifest names', () => {
  it('binds inputs read-only, a writable disk read-write, and the directory of each socket or output file', async () => {
    const { ComponentRegistry, registerBuiltins, readManifest, resolveManifest } = await import('@vmm/core')
    const dir = mkdtempSync(join(tmpdir(), 'vmm-jail-paths-'))
    writeFileSync(join(dir, 'g.bin'), Uint8Array.of(0xf4))
    writeFileSync(join(dir, 'ro.img'), new Uint8Array(4096))
    writeFileSync(join(dir, 'rw.img'), new Uint8Array(4096))
    mkdirSync(join(dir, 'run'))
    writeFileSync(join(dir, 'serial.log'), '') // exists, but serial writes it: its directory is bound
    writeFileSync(
      join(dir, 'm.yaml'),
      [
        'plugins: ["@vmm/board-micro", "@vmm/virtio"]',
        'machine: { memory: 1MiB, irqchip: true }',
        'components:',
        '  guest: { type: raw-image, file: g.bin, address: 0x7c00 }',
        '  serial: { type: serial, console: file, path: serial.log, resources: { port: 0x3f8, irq: 4 } }',
        '  ro: { type: virtio-blk, path: ro.img, readOnly: true, resources: { regs: 0xd0000000, irq: 5 } }',
        '  rw: { type: virtio-blk, path: rw.img, resources: { regs: 0xd0001000, irq: 6 } }',
        '  vsock: { type: virtio-vsock, path: run/v.sock, resources: { regs: 0xd0002000, irq: 7 } }',
        '',
      ].join('\n'),
    )
    const resolved = await resolveManifest(
      readManifest(join(dir, 'm.yaml')),
      registerBuiltins(new ComponentRegistry()),
    )
    const paths = manifestPaths(resolved, join(dir, 'run', 'vm.qmp'))
    expect(paths).toEqual([
      { owner: 'guest.file', path: join(dir, 'g.bin'), access: 'read' },
      { owner: 'serial.path', path: join(dir, 'serial.log'), access: 'create' },
      { owner: 'ro.path', path: join(dir, 'ro.img'), access: 'read' },
      { owner: 'rw.path', path: join(dir, 'rw.img'), access: 'read-write' },
      { owner: 'vsock.path', path: join(dir, 'run/v.sock'), access: 'create' },
      { owner: 'control.qmp', path: join(dir, 'run/vm.qmp'), access: 'create' },
    ])
    // As root (uid 0) every file is usable; as another uid the files (0644, root's) are readable
    // but not writable, and the directories (0755, root's) not writable: each named.
    const uid = process.getuid?.() ?? 0
    expect(manifestBinds(paths, uid, uid)).toEqual(
      expect.arrayContaining([
        { source: join(dir, 'g.bin'), target: join(dir, 'g.bin'), readOnly: true },
        { source: join(dir, 'rw.img'), target: join(dir, 'rw.img'), readOnly: false },
        { source: join(dir, 'run'), target: join(dir, 'run'), readOnly: false },
        { source: dir, target: dir, readOnly: false },
      ]),
    )
    if (uid === 0) {
      expect(() => manifestBinds(paths.slice(3, 4), 4242, 4242)).toThrow(
        `rw.path: the jailed VMM (uid 4242, gid 4242) cannot read and write ${join(dir, 'rw.img')} (its mode is 644, owner 0:0)`,
      )
      expect(() => manifestBinds(paths.slice(4, 5), 4242, 4242)).toThrow(
        `vsock.path: the jailed VMM (uid 4242, gid 4242) cannot create ${join(dir, 'run/v.sock')}: its directory is not writable by it`,
      )
      expect(manifestBinds(paths.slice(0, 1), 4242, 4242)).toHaveLength(1)
    }
  })
})
