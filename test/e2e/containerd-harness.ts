/**
 * Shared by the containerd e2e tests: a private containerd (own root, state,
 * socket, config; CRI disabled) with busybox-static containers, a throwaway
 * "host" network namespace, and a runner for the ctrnet CLI inside it.
 *
 * Nothing here touches the host's containerd, /etc/cni, /var/lib/cni or its
 * links: the CLI runs inside `ip netns exec <host ns>` (a private mount
 * namespace as well) with a temp dir bind-mounted over /var/lib, so even a
 * conflist with host-local's default dataDir (/var/lib/cni/networks) writes
 * into the temp dir.
 *
 * containerd runs in a private mount namespace with a tmpfs over /run, so
 * its hard-wired /run/containerd/{s,runc} paths stay off the host.
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** CTRNET_TEST_CLI overrides the CLI under test (e.g. a private build). */
export const CLI = process.env.CTRNET_TEST_CLI || join(ROOT, 'bin', 'run.js')

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** spawnSync with an argument array; never throws on a non-zero exit. */
export function sh(file: string, args: string[], opts: {input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number} = {}): RunResult {
  const r = spawnSync(file, args, {
    input: opts.input,
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 << 20,
  })
  if (r.error) throw r.error
  return {code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

/** Like sh, but throws with the command and its stderr on failure. */
export function must(file: string, args: string[], opts?: {input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number}): string {
  const r = sh(file, args, opts)
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} -> exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`)
  return r.stdout
}

const uniq = () => `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`

/** A private containerd daemon. */
export class PrivateContainerd {
  readonly dir: string
  readonly address: string
  private proc?: ChildProcess

  /**
   * persistentRun: containerd's /run is a directory of ours instead of a
   * tmpfs, so it outlives a restart() (the shims' sockets stay reachable).
   */
  constructor(
    readonly prefix: string,
    private readonly opts: {persistentRun?: boolean} = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-ctrd-`))
    this.address = join(this.dir, 'containerd.sock')
  }

  async start(): Promise<void> {
    const d = this.dir
    const config = [
      'version = 2',
      `root = "${d}/root"`,
      `state = "${d}/state"`,
      // no CRI (it would want CNI config of its own); no NRI (2.x)
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]',
      `  address = "${this.address}"`,
      '[ttrpc]',
      `  address = "${d}/containerd.sock.ttrpc"`,
      '[debug]',
      `  address = "${d}/debug.sock"`,
      '[metrics]',
      '  address = ""',
      '[plugins]',
      '  [plugins."io.containerd.internal.v1.opt"]',
      `    path = "${d}/opt"`,
      '',
    ].join('\n')
    writeFileSync(join(d, 'config.toml'), config)
    const log = openSync(join(d, 'containerd.log'), 'a')
    // A private mount namespace with a tmpfs over /run: containerd 1.6 puts
    // shim sockets in /run/containerd/s and runc state in /run/containerd/runc
    // whatever its config says; this way none of it lands on the host.
    const run = join(d, 'run')
    if (this.opts.persistentRun) mkdirSync(run, {recursive: true})
    const mountRun = this.opts.persistentRun ? 'mount --bind "$1" /run' : 'mount -t tmpfs h4x-run /run'
    this.proc = spawn(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', `${mountRun} && exec containerd --config "$0"`, join(d, 'config.toml'), run],
      {stdio: ['ignore', log, log], detached: true},
    )
    const deadline = Date.now() + 30_000
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`containerd exited: ${this.log().slice(-2000)}`)
      if (existsSync(this.address) && sh('ctr', ['-a', this.address, 'version']).code === 0) return
      if (Date.now() > deadline) throw new Error(`containerd did not come up: ${this.log().slice(-2000)}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'containerd.log'), 'utf8')
    } catch {
      return ''
    }
  }

  ctr(namespace: string, args: string[], opts?: {timeoutMs?: number}): RunResult {
    return sh('ctr', ['-a', this.address, '-n', namespace, ...args], opts)
  }

  ctrMust(namespace: string, args: string[]): string {
    return must('ctr', ['-a', this.address, '-n', namespace, ...args])
  }

  /** A rootfs with busybox-static and its applets, plus /www/index.html for httpd. */
  makeRootfs(name: string): string {
    const rootfs = join(this.dir, 'rootfs', name)
    for (const sub of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'www', 'root']) mkdirSync(join(rootfs, sub), {recursive: true})
    copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'))
    const applets = must('/bin/busybox', ['--list']).split('\n').filter((a) => a && a !== 'busybox')
    for (const a of applets) {
      try {
        symlinkSync('busybox', join(rootfs, 'bin', a))
      } catch {
        /* duplicate */
      }
    }
    writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\n')
    writeFileSync(join(rootfs, 'www', 'index.html'), `hello from ${name}\n`)
    return rootfs
  }

  /**
   * Starts a container (own network namespace: ctr's default spec) running
   * `sleep` after starting busybox httpd on port 80. Returns its task pid.
   */
  runContainer(namespace: string, id: string, opts: {labels?: Record<string, string>; cmd?: string[]} = {}): number {
    const rootfs = this.makeRootfs(`${namespace}-${id}`)
    const labels = Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`])
    const cmd = opts.cmd ?? ['sh', '-c', 'httpd -p 80 -h /www; exec sleep 86400']
    this.ctrMust(namespace, ['run', '-d', '--null-io', '--env', 'PATH=/bin', ...labels, '--rootfs', rootfs, id, ...cmd])
    return this.taskPid(namespace, id)
  }

  /** Creates a container without starting a task. */
  createContainer(namespace: string, id: string, opts: {labels?: Record<string, string>} = {}): void {
    const rootfs = this.makeRootfs(`${namespace}-${id}`)
    const labels = Object.entries(opts.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`])
    this.ctrMust(namespace, ['container', 'create', '--env', 'PATH=/bin', ...labels, '--rootfs', rootfs, id, 'sleep', '86400'])
  }

  taskPid(namespace: string, id: string): number {
    const out = this.ctrMust(namespace, ['task', 'ls'])
    const line = out.split('\n').find((l) => l.split(/\s+/)[0] === id)
    if (!line) throw new Error(`no task ${id}`)
    return Number(line.split(/\s+/)[1])
  }

  taskStatus(namespace: string, id: string): string | undefined {
    const out = this.ctrMust(namespace, ['task', 'ls'])
    const line = out.split('\n').find((l) => l.split(/\s+/)[0] === id)
    return line?.split(/\s+/)[2]
  }

  /** Runs a command inside the container (ctr task exec). */
  exec(namespace: string, id: string, cmd: string[], timeoutMs = 30_000): RunResult {
    // FIFOs in our dir: ctr's default (/run/containerd/fifo) is not shared with the daemon's private /run
    return this.ctr(namespace, ['task', 'exec', '--fifo-dir', join(this.dir, 'fifo'), '--exec-id', `x${uniq()}`, id, ...cmd], {timeoutMs})
  }

  /** SIGKILLs the task and waits until containerd reports it STOPPED. */
  async killTask(namespace: string, id: string): Promise<void> {
    this.ctrMust(namespace, ['task', 'kill', '-s', 'SIGKILL', id])
    for (let i = 0; i < 100; i++) {
      if (this.taskStatus(namespace, id) === 'STOPPED') return
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`task ${id} did not stop`)
  }

  /** Deletes the stopped task and starts a new one (new pid, new network namespace). */
  restartTask(namespace: string, id: string): number {
    this.ctrMust(namespace, ['task', 'rm', id])
    this.ctrMust(namespace, ['task', 'start', '-d', '--null-io', id])
    return this.taskPid(namespace, id)
  }

  /** Kills and deletes the task (if any) and the container. */
  removeContainer(namespace: string, id: string): void {
    this.ctr(namespace, ['task', 'kill', '-s', 'SIGKILL', id])
    for (let i = 0; i < 50; i++) {
      if (this.ctr(namespace, ['task', 'rm', '-f', id]).code === 0) break
      if (!this.ctr(namespace, ['task', 'ls', '-q']).stdout.split('\n').includes(id)) break
      spawnSync('sleep', ['0.1'])
    }
    this.ctr(namespace, ['container', 'rm', id])
  }

  labels(namespace: string, id: string): Record<string, string> {
    const info = JSON.parse(this.ctrMust(namespace, ['container', 'info', id])) as {Labels?: Record<string, string>}
    return info.Labels ?? {}
  }

  /** Whether the containerd process is running. */
  running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** SIGKILLs containerd (tasks and their shims live on) and waits for its exit; start() brings it back on the same dirs and socket. */
  async kill(): Promise<void> {
    const p = this.proc
    if (!p || !this.running()) return
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGKILL')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (this.running()) throw new Error('containerd did not exit 10s after SIGKILL')
  }

  /** Removes every task and container, stops containerd, deletes its dirs. */
  async stop(): Promise<void> {
    if (this.proc && this.proc.exitCode === null && existsSync(this.address)) {
      const nss = sh('ctr', ['-a', this.address, 'namespaces', 'ls', '-q']).stdout.split('\n').filter(Boolean)
      for (const ns of nss) {
        const ids = sh('ctr', ['-a', this.address, '-n', ns, 'containers', 'ls', '-q']).stdout.split('\n').filter(Boolean)
        for (const id of ids) {
          this.removeContainer(ns, id)
          // a turn of the worker's event loop between containers: dozens of synchronous
          // ctr calls in one stretch (a minute and more on a loaded machine) leave the reply
          // to vitest's onTaskUpdate RPC unread past its fixed 60 s timeout
          await new Promise((r) => setImmediate(r))
        }
      }
    }
    if (this.proc && this.proc.exitCode === null) {
      const p = this.proc
      const exited = new Promise((r) => p.once('exit', r))
      p.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
      if (p.exitCode === null) p.kill('SIGKILL')
    }
    rmSync(this.dir, {recursive: true, force: true})
  }
}

/** A throwaway host network namespace, a temp CNI config/cache dir, and the CLI runner. */
export class HostNs {
  readonly name: string
  readonly dir: string
  readonly netconf: string
  readonly cache: string
  /** Bind-mounted over /var/lib for the CLI (host-local's default dataDir lands here). */
  readonly varlib: string
  readonly dataDir: string

  constructor(prefix: string) {
    this.name = `${prefix}-${uniq()}`
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-cni-`))
    this.netconf = join(this.dir, 'net.d')
    this.cache = join(this.dir, 'cache')
    this.varlib = join(this.dir, 'varlib')
    this.dataDir = join(this.dir, 'ipam')
    for (const d of [this.netconf, this.cache, join(this.varlib, 'cni'), this.dataDir]) mkdirSync(d, {recursive: true})
    must('ip', ['netns', 'add', this.name])
    must('ip', ['-n', this.name, 'link', 'set', 'lo', 'up'])
  }

  /** Runs a program inside the host namespace. */
  exec(file: string, args: string[], opts?: {env?: NodeJS.ProcessEnv; timeoutMs?: number}): RunResult {
    return sh('ip', ['netns', 'exec', this.name, file, ...args], opts)
  }

  /**
   * Runs the ctrnet CLI inside the host namespace (and a private mount
   * namespace with our temp dir over /var/lib), with the temp config and
   * cache dirs and the given containerd address/namespace.
   */
  cli(args: string[], opts: {address?: string; namespace?: string; cacheDir?: string; env?: NodeJS.ProcessEnv} = {}): RunResult {
    const global = ['--cni-netconfpath', this.netconf, '--cni-cachedir', opts.cacheDir ?? this.cache]
    if (opts.address) global.push('-a', opts.address)
    if (opts.namespace) global.push('-n', opts.namespace)
    const env = {...process.env, ...opts.env}
    return sh(
      'ip',
      ['netns', 'exec', this.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', this.varlib, process.execPath, CLI, ...args, ...global],
      {env, timeoutMs: 120_000},
    )
  }

  /** cli() without waiting: for concurrent runs. */
  cliAsync(args: string[], opts: {address?: string; namespace?: string; env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
    const global = ['--cni-netconfpath', this.netconf, '--cni-cachedir', this.cache]
    if (opts.address) global.push('-a', opts.address)
    if (opts.namespace) global.push('-n', opts.namespace)
    const child = spawn(
      'ip',
      ['netns', 'exec', this.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', this.varlib, process.execPath, CLI, ...args, ...global],
      {env: {...process.env, ...opts.env}, stdio: ['ignore', 'pipe', 'pipe']},
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    return new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code) => resolve({code: code ?? 128, stdout, stderr}))
    })
  }

  /** The conflist path nerdctl uses for a network in a namespace. */
  confPath(network: string, namespace = 'default'): string {
    return network === 'bridge' ? join(this.netconf, 'nerdctl-bridge.conflist') : join(this.netconf, namespace, `nerdctl-${network}.conflist`)
  }

  /**
   * `network create` through the CLI, then points host-local's dataDir into
   * the temp dir (nerdctl's conflists use the default /var/lib/cni/networks).
   */
  createNetwork(network: string, args: string[] = [], namespace = 'default'): void {
    const r = this.cli(['network', 'create', ...args, network], {namespace})
    if (r.code !== 0) throw new Error(`network create ${network}: ${r.stderr}`)
    this.patchDataDir(this.confPath(network, namespace))
  }

  patchDataDir(file: string): void {
    const conf = JSON.parse(readFileSync(file, 'utf8')) as {plugins: Array<{ipam?: Record<string, unknown>}>}
    for (const p of conf.plugins) if (p.ipam && p.ipam.type === 'host-local') p.ipam.dataDir = this.dataDir
    writeFileSync(file, JSON.stringify(conf, null, 2) + '\n')
  }

  /** Host-local lease files (IP addresses) of a network, wherever its dataDir is. */
  leases(network: string): string[] {
    const out: string[] = []
    for (const base of [this.dataDir, join(this.varlib, 'cni', 'networks')]) {
      const d = join(base, network)
      // no directory: no lease; any other failure to read it throws (never a silent [])
      if (!existsSync(d)) continue
      out.push(...readdirSync(d).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')))
    }
    return out.sort()
  }

  /** `iptables-save` of the host namespace. */
  iptables(): string {
    return this.mustExec('iptables-save', [])
  }

  links(): string {
    return this.mustExec('ip', ['-o', 'link', 'show'])
  }

  /** Output of a command in the host netns; throws when it fails (a failed read is not "nothing there"). */
  private mustExec(cmd: string, args: string[]): string {
    const r = this.exec(cmd, args)
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} in netns ${this.name} failed (exit ${r.code}): ${r.stderr.trim()}`)
    return r.stdout
  }

  cleanup(): void {
    sh('ip', ['netns', 'del', this.name])
    rmSync(this.dir, {recursive: true, force: true})
  }
}
