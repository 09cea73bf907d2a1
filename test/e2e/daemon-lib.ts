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
}
