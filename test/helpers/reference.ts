/**
 * A tiny libcni-like runner for the REFERENCE plugins (/usr/lib/cni), used as
 * the oracle in conformance tests and benchmarks. It does what libcni's
 * AddNetworkList / DelNetworkList / CheckNetworkList do: per plugin it injects
 * `name`, `cniVersion`, `prevResult` (ADD: previous plugin's result; DEL/CHECK:
 * the final ADD result) and `runtimeConfig` (capability args the plugin
 * declares), runs ADD in order and DEL in reverse, and can write the libcni
 * result cache (`<cacheDir>/results/<net>-<cid>-<ifname>`).
 *
 * With `hostNetns` every plugin runs as `ip netns exec <hostNetns> <cniPath>/<type>`;
 * without it the plugin is exec'd directly (the caller already is in the right netns).
 */
import {spawn} from 'node:child_process'
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import type {CniResult, NetConfList, PluginConf} from '../../src/plugins/types.js'

export const REFERENCE_CNI_PATH = '/usr/lib/cni'

export interface RefRuntimeConf {
  containerId: string
  netns: string
  ifName: string
  args?: Array<[string, string]>
  capabilityArgs?: Record<string, unknown>
}

export interface RefOptions {
  /** Run every plugin inside this netns (by name). */
  hostNetns?: string
  /** Directory of the reference binaries (also CNI_PATH). */
  cniPath?: string
  /** Write/read the libcni result cache here. */
  cacheDir?: string
  /** Extra environment for the plugins. */
  env?: Record<string, string>
  timeoutMs?: number
}

export interface ExecRecord {
  type: string
  command: string
  ms: number
  code: number
  stdin: string
  stdout: string
  stderr: string
}

export class ReferencePluginError extends Error {
  constructor(
    public readonly type: string,
    public readonly command: string,
    public readonly code: number | undefined,
    public readonly msg: string,
    public readonly details: string,
    public readonly stdout: string,
    public readonly stderr: string,
  ) {
    super(`reference ${type} ${command}: ${msg}${details ? `: ${details}` : ''}${code !== undefined ? ` (code ${code})` : ''}`)
    this.name = 'ReferencePluginError'
  }
}

/** libcni's ErrorCheckNotSupp text (api.go), kept word for word. */
export const CHECK_NOT_SUPPORTED = 'does not support the CHECK command'

/** What libcni's CheckNetworkList returns for a config older than 0.4.0. */
export class CheckNotSupportedError extends Error {
  constructor(public readonly cniVersion: string) {
    super(`configuration version "${cniVersion}" ${CHECK_NOT_SUPPORTED}`)
    this.name = 'CheckNotSupportedError'
  }
}

/** libcni's cache file name. */
export function cacheFile(cacheDir: string, network: string, containerId: string, ifName: string): string {
  return join(cacheDir, 'results', `${network}-${containerId}-${ifName}`)
}

function versionAtLeast(v: string, min: string): boolean {
  const a = v.split('.').map(Number)
  const b = min.split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0)
  }
  return true
}

export class ReferenceRunner {
  readonly execs: ExecRecord[] = []
  readonly cniPath: string

  constructor(private readonly opts: RefOptions = {}) {
    this.cniPath = opts.cniPath ?? REFERENCE_CNI_PATH
  }

  /** Total wall time spent in plugin execs since the last reset. */
  get execMs(): number {
    return this.execs.reduce((s, e) => s + e.ms, 0)
  }

  resetExecs(): void {
    this.execs.length = 0
  }

  /** The stdin config libcni builds for one plugin of a list. */
  buildPluginConf(list: NetConfList, plugin: PluginConf, rt: RefRuntimeConf, prevResult?: unknown): Record<string, unknown> {
    const conf: Record<string, unknown> = {...plugin, name: list.name, cniVersion: list.cniVersion}
    if (prevResult !== undefined && prevResult !== null) conf.prevResult = prevResult
    const rc: Record<string, unknown> = {}
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
      if (on && rt.capabilityArgs && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap]
    }
    if (Object.keys(rc).length > 0) conf.runtimeConfig = rc
    return conf
  }

  /** Execs one plugin; returns parsed stdout (or undefined when empty). */
  async execPlugin(type: string, command: string, rt: RefRuntimeConf, conf: Record<string, unknown>): Promise<unknown> {
    const bin = join(this.cniPath, type)
    const file = this.opts.hostNetns ? 'ip' : bin
    const argv = this.opts.hostNetns ? ['netns', 'exec', this.opts.hostNetns, bin] : []
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...(this.opts.env ?? {}),
      CNI_COMMAND: command,
      CNI_CONTAINERID: rt.containerId,
      CNI_NETNS: rt.netns,
      CNI_IFNAME: rt.ifName,
      CNI_ARGS: (rt.args ?? []).map(([k, v]) => `${k}=${v}`).join(';'),
      CNI_PATH: this.cniPath,
    }
    const stdin = JSON.stringify(conf)
    const t0 = process.hrtime.bigint()
    const res = await new Promise<{code: number; stdout: string; stderr: string}>((resolve, reject) => {
      const child = spawn(file, argv, {env, stdio: ['pipe', 'pipe', 'pipe']})
      const out: Buffer[] = []
      const err: Buffer[] = []
      const timer = setTimeout(() => child.kill('SIGKILL'), this.opts.timeoutMs ?? 60_000)
      child.stdout.on('data', (d: Buffer) => out.push(d))
      child.stderr.on('data', (d: Buffer) => err.push(d))
      child.on('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      child.on('close', (code) => {
        clearTimeout(timer)
        resolve({code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()})
      })
      child.stdin.on('error', () => {})
      child.stdin.end(stdin)
    })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    this.execs.push({type, command, ms, stdin, ...res})
    let parsed: unknown
    if (res.stdout.trim()) {
      try {
        parsed = JSON.parse(res.stdout)
      } catch {
        parsed = undefined
      }
    }
    if (res.code !== 0) {
      const e = (parsed ?? {}) as {code?: number; msg?: string; details?: string}
      throw new ReferencePluginError(
        type,
        command,
        e.code,
        e.msg ?? (res.stderr.trim() || `exit ${res.code}`),
        e.details ?? '',
        res.stdout,
        res.stderr,
      )
    }
    return parsed
  }

  /** ADD the whole list; writes the libcni cache when cacheDir is set. */
  async add(list: NetConfList, rt: RefRuntimeConf, confBytes?: Buffer): Promise<CniResult> {
    let prev: unknown
    for (const p of list.plugins) {
      prev = await this.execPlugin(p.type, 'ADD', rt, this.buildPluginConf(list, p, rt, prev))
    }
    const result = (prev ?? {cniVersion: list.cniVersion}) as CniResult
    if (this.opts.cacheDir) this.writeCache(list, rt, result, confBytes)
    return result
  }

  /**
   * DEL the list in reverse. prevResult: the given one, else the cached one
   * (only for cniVersion >= 0.4.0, as libcni). Removes the cache entry.
   */
  async del(list: NetConfList, rt: RefRuntimeConf, prevResult?: unknown): Promise<void> {
    let prev = prevResult
    if (prev === undefined && versionAtLeast(list.cniVersion, '0.4.0')) prev = this.readCache(list.name, rt)?.result
    if (!versionAtLeast(list.cniVersion, '0.4.0')) prev = undefined
    for (const p of [...list.plugins].reverse()) {
      await this.execPlugin(p.type, 'DEL', rt, this.buildPluginConf(list, p, rt, prev))
    }
    if (this.opts.cacheDir) rmSync(cacheFile(this.opts.cacheDir, list.name, rt.containerId, rt.ifName), {force: true})
  }

  /**
   * CHECK the list forward with the given or cached result. Like libcni's
   * CheckNetworkList: a config older than 0.4.0 is refused before any plugin
   * runs (`configuration version "0.3.1" does not support the CHECK command`,
   * libcni's ErrorCheckNotSupp), and only then does disableCheck skip it.
   */
  async check(list: NetConfList, rt: RefRuntimeConf, prevResult?: unknown): Promise<void> {
    if (!versionAtLeast(list.cniVersion, '0.4.0')) throw new CheckNotSupportedError(list.cniVersion)
    if (list.disableCheck) return
    const prev = prevResult ?? this.readCache(list.name, rt)?.result
    if (prev === undefined) throw new Error(`no cached result for ${list.name}/${rt.containerId}/${rt.ifName}`)
    for (const p of list.plugins) {
      await this.execPlugin(p.type, 'CHECK', rt, this.buildPluginConf(list, p, rt, prev))
    }
  }

  writeCache(list: NetConfList, rt: RefRuntimeConf, result: unknown, confBytes?: Buffer): void {
    const dir = join(this.opts.cacheDir!, 'results')
    mkdirSync(dir, {recursive: true, mode: 0o700})
    const entry: Record<string, unknown> = {
      kind: 'cniCacheV1',
      containerId: rt.containerId,
      config: (confBytes ?? Buffer.from(JSON.stringify(list))).toString('base64'),
      ifName: rt.ifName,
      networkName: list.name,
      netns: rt.netns,
    }
    if (rt.args?.length) entry.cniArgs = rt.args
    if (rt.capabilityArgs && Object.keys(rt.capabilityArgs).length) entry.capabilityArgs = rt.capabilityArgs
    entry.result = result
    writeFileSync(cacheFile(this.opts.cacheDir!, list.name, rt.containerId, rt.ifName), JSON.stringify(entry), {mode: 0o600})
  }

  readCache(network: string, rt: RefRuntimeConf): {result?: unknown; [k: string]: unknown} | undefined {
    if (!this.opts.cacheDir) return undefined
    try {
      return JSON.parse(readFileSync(cacheFile(this.opts.cacheDir, network, rt.containerId, rt.ifName), 'utf8'))
    } catch {
      return undefined
    }
  }
}
