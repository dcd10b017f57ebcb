// A dockerd of a test's own (../shared/docs/containers.md, "Running Docker on our machines,
// safely"): its own data root, exec root, socket, pidfile and daemon.json naming our runtime by
// absolute path; no bridge, no iptables, no IP forwarding or masquerading (the network rule:
// containers run with --network none). Node starts it with only fds 0-2 (libuv marks every other
// fd close-on-exec), so the starting process's fds do not leak into runtime calls. Also the
// busybox image, made from Debian's busybox-static package without a registry. Used by
// test/e2e/docker.test.ts and bench/containers.
import { execFileSync, spawn } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The Debian client: a static one in /usr/local/bin is ahead in PATH on our machines. */
export const DOCKER = '/usr/bin/docker'
export const DOCKERD = '/usr/sbin/dockerd'
export const IMAGE = 'vmm-busybox:test'

/** Why Docker cannot run here, or undefined. */
export function dockerMissing() {
  if (!existsSync(DOCKERD) || !existsSync(DOCKER))
    return 'docker.io is not installed (scripts/setup.sh installs it)'
  if (process.getuid?.() !== 0) return 'dockerd needs root'
  return undefined
}

/** The runtime as Docker calls it: a script with absolute paths (dist/main.js is not executable). */
function runtimeWrapper(dir) {
  const file = join(dir, 'vmm-oci')
  writeFileSync(
    file,
    `#!/bin/sh\nexec ${process.execPath} ${join(repo, 'packages/oci/dist/main.js')} "$@"\n`,
    { mode: 0o755 },
  )
  return file
}

/** `vmm-oci template build`: the container template in the cache before the first container (else the first builds it). */
export function buildTemplate() {
  return execFileSync(process.execPath, [join(repo, 'packages/oci/dist/main.js'), 'template', 'build'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim()
}

/** busybox-static's .deb: apt's cache, else `apt-get download` (from Debian's archive). */
function busyboxDeb(dir) {
  const cache = '/var/cache/apt/archives'
  const found = existsSync(cache)
    ? readdirSync(cache).find((n) => n.startsWith('busybox-static_') && n.endsWith('.deb'))
    : undefined
  if (found) return join(cache, found)
  execFileSync('apt-get', ['download', 'busybox-static'], { cwd: dir, stdio: 'pipe' })
  return join(
    dir,
    readdirSync(dir).find((n) => n.startsWith('busybox-static_')),
  )
}

/** The image's tree at `root`: busybox-static unpacked, one link per applet, the directories Docker mounts on. */
export function busyboxRootfs(root, scratch) {
  mkdirSync(root)
  execFileSync('dpkg-deb', ['-x', busyboxDeb(scratch), root])
  const applets = execFileSync(join(root, 'bin/busybox'), ['--list-full'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
  for (const a of applets) {
    if (a === 'bin/busybox') continue
    mkdirSync(join(root, dirname(a)), { recursive: true })
    if (!existsSync(join(root, a))) symlinkSync('/bin/busybox', join(root, a))
  }
  for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp', 'root']) mkdirSync(join(root, d), { recursive: true })
}

export async function startDocker() {
  const dir = mkdtempSync('/tmp/vmm-docker-')
  const runtime = runtimeWrapper(dir)
  // `vmm` restores the pre-booted container template (the fast start); `vmm-cold` boots each
  // container's VM, as the runtime does when the template cannot serve a container;
  // `vmm-nojail`: the sandbox not jailed (bench/containers compares the two).
  const runtimes = {
    vmm: { path: runtime },
    'vmm-cold': { path: runtime, runtimeArgs: ['--no-template'] },
    'vmm-nojail': { path: runtime, runtimeArgs: ['--no-jail'] },
  }
  writeFileSync(join(dir, 'daemon.json'), JSON.stringify({ runtimes }))
  const sock = join(dir, 'docker.sock')
  const log = openSync(join(dir, 'dockerd.log'), 'a')
  const daemon = spawn(
    DOCKERD,
    [
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `-H=unix://${sock}`,
      `--pidfile=${join(dir, 'docker.pid')}`,
      `--config-file=${join(dir, 'daemon.json')}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
    ],
    { stdio: ['ignore', log, log], detached: true },
  )
  const env = { ...process.env, DOCKER_HOST: `unix://${sock}` }
  const docker = (args, options = {}) => execFileSync(DOCKER, args, { env, encoding: 'utf8', ...options })
  for (let i = 0; ; i++) {
    try {
      docker(['version'], { stdio: 'pipe' })
      break
    } catch {
      if (i > 120 || daemon.exitCode !== null)
        throw new Error(
          `dockerd did not come up: ${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`,
        )
      await new Promise((r) => setTimeout(r, 500))
    }
  }
  const root = join(dir, 'image')
  busyboxRootfs(root, dir)
  const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 << 20 })
  docker(['import', '-', IMAGE], { input: tar, stdio: ['pipe', 'pipe', 'pipe'] })
  rmSync(root, { recursive: true, force: true })

  async function stop() {
    try {
      const ids = docker(['ps', '-aq']).split('\n').filter(Boolean)
      if (ids.length) docker(['rm', '-f', ...ids], { stdio: 'pipe' })
    } catch {}
    daemon.kill('SIGTERM')
    for (let i = 0; i < 100 && daemon.exitCode === null && daemon.signalCode === null; i++)
      await new Promise((r) => setTimeout(r, 200))
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL')
    // Overlay mounts dockerd left (it unmounts them on a clean stop) would make rm fail.
    try {
      execFileSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], {
        stdio: 'pipe',
      })
    } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
  return {
    dir,
    env,
    docker,
    stop,
    runtime,
    containerdSocket: join(dir, 'exec', 'containerd', 'containerd.sock'),
  }
}
