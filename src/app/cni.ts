import {createHash} from 'node:crypto'
import {realpathSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {parseCniArgs} from '../libcni/args.js'
import {findNetworkConf, type LoadedConf} from '../libcni/loader.js'
import {CNI_ERR, CniError, type PluginNetConf} from '../plugins/types.js'
import {OVERLAY_TYPE} from '../plugins/overlay/config.js'
import {symlinkAtomic} from '../sys/atomic.js'
import {CtrnetError} from '../sys/errors.js'
import {SUPPORTED_VERSIONS} from '../libcni/version.js'
import * as validate from '../libcni/validate.js'
import * as fields from '../plugins/fields.js'
import {CniRuntime, type RuntimeConf} from '../libcni/runtime.js'
import {typedRuntimeConf} from '../libcni/conf.js'
import type {AttachRequest} from '../netconf/attach-request.js'
import {NoSuchNetwork} from '../netconf/store.js'
import type {Settings} from './settings.js'

/**
 * The one factory of runtimes: `cni add|check|del|gc` and `network
 * connect|disconnect|gc` all build theirs here, so --cni-mode and
 * CTRNET_PLUGIN_TIMEOUT_MS mean the same everywhere.
 */
export function makeRuntime(s: Pick<Settings, 'cniPath' | 'cacheDir' | 'mode' | 'pluginTimeoutMs' | 'iptablesLockPath'>): CniRuntime {
  return new CniRuntime({cniPath: s.cniPath, cacheDir: s.cacheDir, mode: s.mode, execTimeoutMs: s.pluginTimeoutMs, iptablesLockPath: s.iptablesLockPath})
}

export function loadNetwork(s: Pick<Settings, 'confDir' | 'namespace'>, name: string, warn?: (msg: string) => void): LoadedConf {
  const net = findNetworkConf(s.confDir, s.namespace, name, (file, err) => warn?.(`skipping ${file}: ${err.message}`))
  if (!net) throw new NoSuchNetwork(name, s)
  return net
}

/** cnitool's container id for a netns: "cnitool-" + 20 hex chars of sha512(path). */
export function defaultContainerId(netns: string): string {
  return 'cnitool-' + createHash('sha512').update(netns).digest('hex').slice(0, 20)
}

export interface AttachmentFlags {
  netns: string
  containerId?: string
  ifName: string
  publish: string[]
  ip?: string
  capArgs?: string
  cniArgs?: string
}

/**
 * `cni add|check|del`'s flags, parsed once: the attachment request (the
 * interface name, -p, --ip), then cnitool's raw --cap-args and --cni-args,
 * parsed here as the runtime would. A requested IP goes to the `ips`
 * capability when a plugin of the chain declares it, else to CNI_ARGS `IP=`
 * (with IgnoreUnknown=1, which host-local reads). The result is typed: the
 * runtime does not parse it again.
 */
export function runtimeConfFromFlags(net: LoadedConf, f: AttachmentFlags): RuntimeConf {
  const req: AttachRequest = {network: net.conf.name, ifname: fields.ifName(f.ifName, '--ifname', CNI_ERR.INVALID_ENV), publish: [], aliases: []}
  let capabilityArgs: Record<string, unknown> = {}
  if (f.capArgs) {
    let parsed: unknown
    try {
      parsed = JSON.parse(f.capArgs)
    } catch (err) {
      throw new Error(`--cap-args is not JSON: ${(err as Error).message}`)
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('--cap-args must be a JSON object')
    capabilityArgs = validate.capabilityArgs(parsed) ?? {}
  }
  req.publish = f.publish.map((p) => validate.portSpec(p, '--publish'))
  if (req.publish.length > 0) capabilityArgs.portMappings = req.publish
  const args = parseCniArgs(f.cniArgs ?? '')
  validate.cniArgs(args)
  if (f.ip) {
    req.ip = fields.ipAddress(f.ip, '--ip')
    const declaresIps = net.conf.plugins.some((p) => p.capabilities?.ips)
    if (declaresIps) capabilityArgs.ips = [req.ip]
    else {
      if (!args.some(([k]) => k === 'IgnoreUnknown')) args.unshift(['IgnoreUnknown', '1'])
      args.push(['IP', req.ip])
    }
  }
  return typedRuntimeConf({
    containerId: f.containerId || defaultContainerId(f.netns),
    netns: f.netns,
    ifName: req.ifname!,
    args,
    capabilityArgs,
  })
}

/** What `ctrnet cni plugin` prints and how it exits, by the CNI protocol. */
export interface PluginOutcome {
  stdout: string
  exitCode: number
}

/** The spec version a VERSION answer names: the one asked for when ctrnet speaks it, else its newest. */
function versionAnswer(stdin: string): PluginOutcome {
  let asked: unknown
  try {
    asked = (JSON.parse(stdin) as {cniVersion?: unknown} | null)?.cniVersion
  } catch {
    // libcni sends {"cniVersion": ...}; anything else still gets the answer
  }
  const known = SUPPORTED_VERSIONS as readonly string[]
  const cniVersion = typeof asked === 'string' && known.includes(asked) ? asked : known[known.length - 1]
  return {stdout: JSON.stringify({cniVersion, supportedVersions: [...known]}), exitCode: 0}
}

/**
 * `ctrnet cni plugin`: an exec'd CNI plugin for the types ctrnet implements
 * (the overlay meta plugin, type `ctrnet-overlay`, so nerdctl or
 * containerd's CRI can run an overlay conflist; bin/run.js runs this when
 * invoked under that name, as `cni plugin --install` links it). The CNI_*
 * environment and stdin in, the result or the CNI error object (JSON) on
 * stdout, exit 1 on error. VERSION answers whatever stdin holds, as the Go
 * skeleton does.
 */
export async function runAsCniPlugin(
  s: Pick<Settings, 'cacheDir' | 'mode' | 'pluginTimeoutMs' | 'iptablesLockPath'>,
  env: {command: string; containerId: string; netns: string; ifName: string; cniArgs: string; cniPath: string[]},
  stdin: string,
): Promise<PluginOutcome> {
  if (env.command === 'VERSION') return versionAnswer(stdin)
  let version = '1.0.0'
  try {
    let conf: PluginNetConf
    try {
      conf = JSON.parse(stdin) as PluginNetConf
    } catch (err) {
      throw new CniError(CNI_ERR.DECODING_FAILURE, 'error decoding network config', (err as Error).message)
    }
    if (!conf || typeof conf !== 'object') throw new CniError(CNI_ERR.DECODING_FAILURE, 'error decoding network config', 'not a JSON object')
    if (typeof conf.cniVersion === 'string') version = conf.cniVersion
    if (env.command !== 'ADD' && env.command !== 'DEL' && env.command !== 'CHECK') {
      throw new CniError(CNI_ERR.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(env.command)}`)
    }
    const runtime = makeRuntime({...s, cniPath: env.cniPath})
    const rt: RuntimeConf = {containerId: env.containerId, netns: env.netns, ifName: env.ifName, args: parseCniArgs(env.cniArgs)}
    const res = await runtime.runAsPlugin(env.command, conf, rt)
    return {stdout: res ? JSON.stringify(res) : '', exitCode: 0}
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CNI_ERR.INTERNAL, err instanceof Error ? err.message : String(err))
    return {stdout: JSON.stringify(e.toJSON(version)), exitCode: 1}
  }
}

/**
 * `ctrnet cni plugin --install`: binDir/ctrnet-overlay becomes a symlink to
 * the real path of `entry` (bin/run.js, which runs `cni plugin` when invoked under that
 * name), made under a temp name and renamed into place; run again it changes
 * nothing. Returns the installed path.
 */
export function installCniPlugin(binDir: string, entry: string): string {
  const what = 'cni plugin --install'
  let target: string
  try {
    // the real file: a link to a link would break when the first one moves (npm's bin link)
    target = realpathSync(entry)
  } catch {
    throw new CtrnetError(what, `the ctrnet entry ${entry} is missing`)
  }
  try {
    if (!statSync(binDir).isDirectory()) throw new CtrnetError(what, `${binDir} is not a directory`)
  } catch (err) {
    if (err instanceof CtrnetError) throw err
    const e = err as NodeJS.ErrnoException
    throw new CtrnetError(what, e.code === 'ENOENT' ? `${binDir} does not exist (create it, or give --cni-bin-dir)` : `${binDir}: ${e.message}`)
  }
  const dest = join(binDir, OVERLAY_TYPE)
  try {
    symlinkAtomic(target, dest)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS' ? `${binDir} is not writable (${e.code})` : e.code === 'EISDIR' ? `${dest} is a directory` : e.message
    throw new CtrnetError(what, `cannot install ${dest}: ${why}`)
  }
  return dest
}
