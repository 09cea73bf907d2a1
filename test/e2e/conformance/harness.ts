/**
 * Conformance harness: one "side" = a throwaway host netns + container netns +
 * temp dir (net.d, cache, ipam dataDir). The reference side runs the plugins of
 * /usr/lib/cni through test/helpers/reference.ts; the ctrnet side runs
 * `ip netns exec <host> node bin/run.js cni add|del|check ...`.
 */
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import type {NetConfList, PortMapping} from '../../../src/plugins/types.js'
import {run, type ExecResult} from '../../../src/sys/exec.js'
import {createNetns, destroyNetns, netnsPath} from '../../helpers/netns.js'
import {cacheFile, ReferenceRunner, type RefRuntimeConf} from '../../helpers/reference.js'
import {dumpState, type KernelState} from '../../helpers/state.js'

export const PREFIX = 'h5x'
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const RUN_JS = join(REPO, 'bin', 'run.js')
export const REF_PATH = '/usr/lib/cni'

export interface CaseCtx {
  dataDir: string
}

export interface ConfCase {
  name: string
  /** The conflist (its name is the network name). */
  conf: (ctx: CaseCtx) => NetConfList
  ports?: PortMapping[]
  /** Extra capability args (passed to ctrnet with --cap-args). */
  capArgs?: Record<string, unknown>
  cniArgs?: Array<[string, string]>
  ifName?: string
  /** ctrnet's --cni-mode (default embedded). */
  mode?: 'embedded' | 'exec'
  /** Prepares the host netns (e.g. a dummy parent link). */
  setupHost?: (hostNs: string) => Promise<void>
  keepMacs?: string[]
  extraSysctls?: {container?: string[]; host?: string[]}
  /** Run the reference CHECK (minus these plugin types) against ctrnet's ADD. */
  refCheckSkip?: string[]
}

export function newContainerId(): string {
  return `default-${randomBytes(32).toString('hex')}`
}

export class Side {
  hostNs = ''
  containerNs = ''
  dir = ''
  constructor(
    readonly label: 'ref' | 'ours',
    readonly c: ConfCase,
    readonly containerId: string,
  ) {}

  get netConfDir() {
    return join(this.dir, 'net.d')
  }
  get cacheDir() {
    return join(this.dir, 'cache')
  }
  get dataDir() {
    return join(this.dir, 'ipam')
  }
  get ifName() {
    return this.c.ifName ?? 'eth0'
  }
  get conf(): NetConfList {
    return this.c.conf({dataDir: this.dataDir})
  }
  get confBytes(): Buffer {
    return readFileSync(join(this.netConfDir, `${this.conf.name}.conflist`))
  }
  get rt(): RefRuntimeConf {
    const capabilityArgs: Record<string, unknown> = {...(this.c.capArgs ?? {})}
    if (this.c.ports?.length) capabilityArgs.portMappings = this.c.ports
    return {
      containerId: this.containerId,
      netns: netnsPath(this.containerNs),
      ifName: this.ifName,
      args: this.c.cniArgs ?? [],
      capabilityArgs,
    }
  }

  async setup(): Promise<void> {
    const tag = this.c.name.replace(/[^a-z0-9]/gi, '').slice(0, 6) + (this.label === 'ref' ? 'r' : 'o')
    this.dir = mkdtempSync(join(tmpdir(), `${PREFIX}-${tag}-`))
    mkdirSync(this.netConfDir, {recursive: true})
    writeFileSync(join(this.netConfDir, `${this.conf.name}.conflist`), JSON.stringify(this.conf, null, 2))
    this.hostNs = await createNetns(PREFIX, `${tag}h`)
    this.containerNs = await createNetns(PREFIX, `${tag}c`, {loopbackUp: false})
    await this.c.setupHost?.(this.hostNs)
  }

  async teardown(): Promise<void> {
    if (this.containerNs) await destroyNetns(this.containerNs)
    if (this.hostNs) await destroyNetns(this.hostNs)
    rmSync(join('/run/cni/tuning', `${this.containerId}_${this.ifName}.json`), {force: true})
    if (this.dir) rmSync(this.dir, {recursive: true, force: true})
  }

  reference(): ReferenceRunner {
    return new ReferenceRunner({hostNetns: this.hostNs, cniPath: REF_PATH, cacheDir: this.cacheDir})
  }

  /**
   * ctrnet's --cni-mode: the case's, else embedded. CTRNET_CONFORMANCE_MODE=exec
   * forces exec mode (a self-test of this harness: ctrnet then execs the very
   * reference plugins, so only the masking is exercised).
   */
  get mode(): 'embedded' | 'exec' {
    const forced = process.env.CTRNET_CONFORMANCE_MODE
    if (forced === 'exec' || forced === 'embedded') return forced
    return this.c.mode ?? 'embedded'
  }

  tuningFile(): string {
    return join('/run/cni/tuning', `${this.containerId}_${this.ifName}.json`)
  }

  cacheFile(): string {
    return cacheFile(this.cacheDir, this.conf.name, this.containerId, this.ifName)
  }

  hasCache(): boolean {
    return existsSync(this.cacheFile())
  }

  /** ctrnet cni <cmd> for this side's attachment (same flags for add/del/check). */
  ctrnet(cmd: 'add' | 'del' | 'check', extra: string[] = []): Promise<ExecResult> {
    const argv = [
      'cni',
      cmd,
      this.conf.name,
      netnsPath(this.containerNs),
      '--container-id',
      this.containerId,
      '--ifname',
      this.ifName,
      '--cni-netconfpath',
      this.netConfDir,
      '--cni-cachedir',
      this.cacheDir,
      '--cni-path',
      REF_PATH,
      '--cni-mode',
      this.mode,
      ...(this.c.ports ?? []).map(portSpec).flatMap((p) => ['-p', p]),
      ...(this.c.capArgs ? ['--cap-args', JSON.stringify(this.c.capArgs)] : []),
      ...(this.c.cniArgs?.length ? ['--cni-args', this.c.cniArgs.map(([k, v]) => `${k}=${v}`).join(';')] : []),
      ...extra,
    ]
    return runCtrnet(this.hostNs, argv)
  }

  async dump(): Promise<KernelState> {
    return dumpState({
      hostNs: this.hostNs,
      containerNs: this.containerNs,
      dataDirs: [this.dataDir],
      files: [this.tuningFile()],
      keepMacs: this.c.keepMacs,
      extraSysctls: this.c.extraSysctls,
      replace: [
        [this.dir, '<TMP>'],
        [this.containerNs, '<CNS>'],
        [this.hostNs, '<HNS>'],
        [this.tuningFile(), '<TUNINGFILE>'],
      ],
    })
  }
}

/** Runs the ctrnet CLI inside a host netns; never throws (callers assert on code). */
export function runCtrnet(hostNs: string, argv: string[]): Promise<ExecResult> {
  const env = {...process.env}
  for (const k of ['CNI_ARGS', 'CAP_ARGS', 'CTRNET_CNI_MODE', 'NETCONFPATH', 'CNI_PATH']) delete env[k]
  return run('ip', ['netns', 'exec', hostNs, process.execPath, RUN_JS, ...argv], {allowFailure: true, env, timeoutMs: 60_000})
}

export function portSpec(p: PortMapping): string {
  const host = p.hostIP ? (p.hostIP.includes(':') ? `[${p.hostIP}]:` : `${p.hostIP}:`) : ''
  return `${host}${p.hostPort}:${p.containerPort}/${p.protocol}`
}

export function describeFailure(what: string, r: ExecResult): string {
  return `${what} exited ${r.code}\nstdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`
}
