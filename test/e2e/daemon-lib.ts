/**
 * Shared by the daemon e2e tests: `ctrnet daemon` run inside a HostNs
 * against a PrivateContainerd (one --once pass, or a long-running daemon
 * whose JSON log lines are collected), and what the tests read back (CNI
 * cache and journal entries, per-container iptables rules).
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {CLI, type HostNs, type PrivateContainerd, type RunResult} from './containerd-harness.js'

export type LogLine = Record<string, unknown>

/** Parses the daemon's stdout: one JSON object per line. */
export function logLines(stdout: string): LogLine[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as LogLine)
}

/** `ctr` against a PrivateContainerd without blocking the event loop (for concurrent calls); never throws on a non-zero exit. */
export function ctrAsync(ctrd: PrivateContainerd, namespace: string, args: string[]): Promise<RunResult> {
  const child = spawn('ctr', ['-a', ctrd.address, '-n', namespace, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({code: code ?? 128, stdout, stderr}))
  })
}

/** A `ctrnet daemon` started in the background; its stdout and stderr collected in out(). */
export class RunningDaemon {
  readonly exited: Promise<number | null>
  private text = ''

  constructor(readonly proc: ChildProcess) {
    proc.stdout!.on('data', (d: Buffer) => (this.text += d.toString()))
    proc.stderr!.on('data', (d: Buffer) => (this.text += d.toString()))
    this.exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  }

  out(): string {
    return this.text
  }

  /** Resolves when ok() holds; throws after ms with the daemon's output. */
  async until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`${what} not seen within ${ms / 1000}s; daemon output:\n${this.text}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null
  }

  /** SIGKILL (if still running) and wait for the exit. */
  async killHard(): Promise<void> {
    if (this.running()) this.proc.kill('SIGKILL')
    await this.exited
  }
}

/** The daemon of one test file: its containerd namespace, host netns and run dir. */
export class DaemonFixture {
  constructor(
    readonly ctrd: PrivateContainerd,
    readonly host: HostNs,
    readonly namespace: string,
    readonly runDir: string,
  ) {}

  cli(args: string[]): RunResult {
    return this.host.cli(args, {address: this.ctrd.address, namespace: this.namespace})
  }

  /** One `daemon --once` pass; its log lines parsed. */
  once(extra: string[] = []): RunResult & {log: LogLine[]} {
    const r = this.cli(['daemon', '--once', '--run-dir', this.runDir, ...extra])
    return {...r, log: logLines(r.stdout)}
  }

  /** Starts `ctrnet daemon` (long-running) in the host netns with the test's dirs. */
  start(args: string[]): RunningDaemon {
    const {host, ctrd} = this
    const global = ['--cni-netconfpath', host.netconf, '--cni-cachedir', host.cache, '-a', ctrd.address, '-n', this.namespace]
    const proc = spawn(
      'ip',
      ['netns', 'exec', host.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', host.varlib, process.execPath, CLI, 'daemon', ...args, '--run-dir', this.runDir, ...global],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    return new RunningDaemon(proc)
  }

  /** CNI cache result entries (`<net>-<cid>-<ifname>`), sorted. */
  cache(): string[] {
    const d = join(this.host.cache, 'results')
    return existsSync(d) ? readdirSync(d).sort() : []
  }

  /** ADD journal entries (ADDs begun and not finished), sorted. */
  journal(): string[] {
    const d = join(this.host.cache, 'ctrnet', 'pending')
    return existsSync(d) ? readdirSync(d).sort() : []
  }

  /** The host netns's iptables rules that name a CNI container id. */
  rulesOf(cid: string): string[] {
    return this.host
      .iptables()
      .split('\n')
      .filter((l) => l.startsWith('-A') && l.includes(cid))
  }

  cached(entry: string): {netns: string; capabilityArgs?: unknown} {
    return JSON.parse(readFileSync(join(this.host.cache, 'results', entry), 'utf8')) as {netns: string; capabilityArgs?: unknown}
  }

  /** The tasks of the fixture's namespace: id -> pid and status, from one `ctr task ls`. */
  tasks(): Map<string, {pid: number; status: string}> {
    const tasks = new Map<string, {pid: number; status: string}>()
    for (const l of this.ctrd.ctrMust(this.namespace, ['task', 'ls']).split('\n').slice(1)) {
      const [id, pid, status] = l.trim().split(/\s+/)
      if (id && status) tasks.set(id, {pid: Number(pid), status})
    }
    return tasks
  }

  /** Ids of the containers of the fixture's namespace whose task is RUNNING, sorted. */
  running(): string[] {
    return [...this.tasks()]
      .filter(([, t]) => t.status === 'RUNNING')
      .map(([id]) => id)
      .sort()
  }

  /** CNI container ids named in the comments of the host netns's iptables rules (bridge ipMasq, portmap), each with the number of rules naming it. */
  ruleCounts(iptables = this.host.iptables()): Map<string, number> {
    const counts = new Map<string, number>()
    for (const l of iptables.split('\n')) {
      if (!l.startsWith('-A')) continue
      for (const m of l.matchAll(/id: \\"([^"\\]+)\\"/g)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1)
    }
    return counts
  }

  /** CNI container ids named in the comments of the host netns's iptables rules, sorted. */
  ruleOwners(iptables = this.host.iptables()): string[] {
    return [...this.ruleCounts(iptables).keys()].sort()
  }

  /** The owner (`<cid>/<ifname>`) of every host-local lease of a network, sorted: a double lease shows twice. */
  leaseOwners(net: string): string[] {
    // wherever host-local's dataDir is (HostNs.leases)
    const dirs = [this.host.dataDir, join(this.host.varlib, 'cni', 'networks')].map((base) => join(base, net)).filter((d) => existsSync(d))
    return dirs
      .flatMap((d) =>
        readdirSync(d)
          .filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'))
          .map((f) => readFileSync(join(d, f), 'utf8').trim().split('\r\n').join('/')),
      )
      .sort()
  }

  /**
   * What the attachments of network `net` leave in the host netns and the
   * CNI dirs: cache result entries (each with the netns it names), journal
   * entries, lease owners, the ids iptables rules name, portmap DNAT chains,
   * host veths. Compare with expectedAccount().
   */
  account(net: string): Account {
    const cache = this.cache()
    const iptables = this.host.iptables()
    return {
      cache,
      netns: Object.fromEntries(cache.map((e) => [e, this.cached(e).netns])),
      journal: this.journal(),
      leases: this.leaseOwners(net),
      rules: this.ruleOwners(iptables),
      dnChains: iptables.split('\n').filter((l) => l.startsWith(':CNI-DN-')).length,
      veths: this.host.links().split('\n').filter((l) => / veth/.test(l)).length,
    }
  }

  /**
   * account() when exactly `ids` (containers of the fixture's namespace with
   * a running task) are attached to `net`, each once (eth0) in its task's
   * current netns, `published` of them with a port, and nothing else is.
   */
  expectedAccount(net: string, ids: string[], published: string[] = ids): Account {
    const tasks = this.tasks()
    const cid = (id: string) => `${this.namespace}-${id}`
    const entry = (id: string) => `${net}-${cid(id)}-eth0`
    const netnsOf = (id: string) => {
      const t = tasks.get(id)
      return t && t.status === 'RUNNING' ? `/proc/${t.pid}/ns/net` : `(no running task of ${id})`
    }
    return {
      cache: ids.map(entry).sort(),
      netns: Object.fromEntries(ids.map((id) => [entry(id), netnsOf(id)])),
      journal: [],
      leases: ids.map((id) => `${cid(id)}/eth0`).sort(),
      rules: ids.map(cid).sort(),
      dnChains: published.filter((id) => ids.includes(id)).length,
      veths: ids.length,
    }
  }
}

/** See DaemonFixture.account(). */
export interface Account {
  cache: string[]
  /** cache entry -> the netns it names */
  netns: Record<string, string>
  journal: string[]
  /** `<cid>/<ifname>` of each lease */
  leases: string[]
  /** CNI container ids named by iptables rules */
  rules: string[]
  dnChains: number
  veths: number
}
