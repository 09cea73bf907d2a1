/**
 * The CNI data model shared by the runtime and the plugins. Results are kept
 * internally in the 1.x form (interfaces / ips / routes / dns); conversion to
 * and from 0.3.x/0.4.0 lives in libcni/version.ts.
 */
import type {NetfilterTx} from '../kernel/netfilter/iptables.js'

/**
 * The one network-name rule (libcni's ValidateNetworkName; a name also names
 * files: leases, state, cache entries): a letter or digit, then letters,
 * digits, '_', '.' and '-'. nerdctl's `network create` also wants two
 * characters at least (netconf/names.ts).
 */
export const NETWORK_NAME_RULE = '^[a-zA-Z0-9][a-zA-Z0-9_.-]*$'
const NETWORK_NAME_RE = new RegExp(NETWORK_NAME_RULE)

export function isNetworkName(v: unknown): v is string {
  return typeof v === 'string' && NETWORK_NAME_RE.test(v)
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION'

/** One plugin entry of a conflist, as on disk (plus what the runtime injects). */
export interface PluginConf {
  type: string
  capabilities?: Record<string, boolean>
  ipam?: IpamConf
  [key: string]: unknown
}

export interface IpamConf {
  type: string
  [key: string]: unknown
}

/** A network configuration list (the .conflist file). */
export interface NetConfList {
  cniVersion: string
  name: string
  disableCheck?: boolean
  disableGC?: boolean
  plugins: PluginConf[]
  [key: string]: unknown
}

/** What a plugin sees on stdin: its entry plus name, cniVersion and injections. */
export interface PluginNetConf extends PluginConf {
  name: string
  cniVersion: string
  prevResult?: CniResult
  runtimeConfig?: Record<string, unknown>
  args?: Record<string, unknown>
}

export interface CniInterface {
  name: string
  mac?: string
  mtu?: number
  sandbox?: string
  socketPath?: string
  pciID?: string
}

export interface CniIpConfig {
  /** CIDR: the address with its subnet prefix, e.g. 10.4.1.2/24 */
  address: string
  gateway?: string
  /** Index into interfaces */
  interface?: number
}

export interface CniRoute {
  dst: string
  gw?: string
  mtu?: number
  advmss?: number
  priority?: number
  table?: number
  scope?: number
}

export interface CniDns {
  nameservers?: string[]
  domain?: string
  search?: string[]
  options?: string[]
}

export interface CniResult {
  cniVersion: string
  interfaces?: CniInterface[]
  ips?: CniIpConfig[]
  routes?: CniRoute[]
  dns?: CniDns
  [key: string]: unknown
}

export type Protocol = 'tcp' | 'udp' | 'sctp'

/**
 * One published port, the one type of it from the edge (a -p flag, a label,
 * capability args: libcni/validate.ts) to portmap's rules. hostIP, when
 * set, is an address in canonical form.
 */
export interface PortMapping {
  hostPort: number
  containerPort: number
  protocol: Protocol
  hostIP?: string
}

/** The CNI error object (spec "Error" section). */
export class CniError extends Error {
  constructor(
    public readonly code: number,
    public readonly msg: string,
    public readonly details = '',
  ) {
    super(details ? `${msg}: ${details}` : msg)
    this.name = 'CniError'
  }

  toJSON(cniVersion = '1.0.0'): Record<string, unknown> {
    return {cniVersion, code: this.code, msg: this.msg, ...(this.details ? {details: this.details} : {})}
  }
}

export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETCONF: 7,
  TRY_AGAIN_LATER: 11,
  INTERNAL: 999,
} as const

/**
 * Everything one plugin invocation receives: the CNI_* environment and the
 * stdin config. `invokeIpam` lets a main plugin delegate to its IPAM plugin
 * (embedded or exec'd) the way the reference plugins call ipam.ExecAdd/ExecDel.
 */
export interface PluginRequest {
  command: CniCommand
  containerId: string
  /** Path of the container's network namespace; may be '' (or vanished) on DEL/GC. */
  netns: string
  ifName: string
  /** CNI_ARGS as given, e.g. "IgnoreUnknown=1;IP=10.4.1.9" */
  cniArgs: string
  /** CNI_ARGS parsed into ordered pairs */
  args: Array<[string, string]>
  /** CNI_PATH split on ':' */
  cniPath: string[]
  config: PluginNetConf
  /**
   * Delegates to the IPAM plugin named by `conf.ipam.type`, like the reference
   * plugins' ipam.ExecAdd/ExecDel: pass the plugin's WHOLE netconf (normally
   * `req.config`, it carries `ipam`, `name`, `cniVersion`, `runtimeConfig`,
   * `args`). ADD returns the IPAM result in 1.x form; DEL/CHECK return undefined.
   */
  invokeIpam(command: 'ADD' | 'DEL' | 'CHECK' | 'GC', conf: PluginNetConf): Promise<CniResult | undefined>
  /**
   * Delegates to the plugin named by `conf.type` with `conf` as its whole
   * stdin (embedded or exec'd), as a meta plugin does with invoke.DelegateAdd
   * (flannel's CNI plugin delegates to bridge this way). Same attachment,
   * same netfilter transaction. ADD returns its result; DEL/CHECK undefined.
   */
  invokeDelegate(command: 'ADD' | 'DEL' | 'CHECK', conf: PluginNetConf): Promise<CniResult | undefined>
  /**
   * The netfilter transaction of the chain this invocation belongs to: the
   * plugin records its iptables changes with `netfilter.plan()`; the runtime
   * commits them, with those of the other plugins, once the whole chain has
   * succeeded (nothing is applied when it fails). CHECK, STATUS and the
   * ADD's precheck only read: they get a closed one, whose plan() throws.
   */
  netfilter: NetfilterTx
}

/** An in-process plugin. Results are returned in 1.x form. */
export interface EmbeddedPlugin {
  /**
   * The ADD's config checks that touch nothing (its config parser, on the
   * stdin it will get): the runtime runs them for every plugin of the chain
   * before the first one does any work.
   */
  precheck?(req: PluginRequest): Promise<void> | void
  add(req: PluginRequest): Promise<CniResult>
  del(req: PluginRequest): Promise<void>
  check(req: PluginRequest): Promise<void>
  gc?(req: PluginRequest): Promise<void>
  status?(req: PluginRequest): Promise<void>
}
