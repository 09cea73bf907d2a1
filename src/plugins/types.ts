/**
 * The CNI data model shared by the runtime and the plugins. Results are kept
 * internally in the 1.x form (interfaces / ips / routes / dns); conversion to
 * and from 0.3.x/0.4.0 lives in libcni/version.ts.
 */
import type {FirewallTx} from '../kernel/netfilter/firewall.js'
import type {FirewallBackendName} from '../kernel/netfilter/backends/index.js'

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
  /**
   * The stdin netconf as built for this invocation (prevResult, runtimeConfig).
   * Its fields are already parsed: the plugin gets them typed as its second
   * argument; what depends on prevResult is read from here at run time.
   */
  config: PluginNetConf
  /**
   * Delegates to the IPAM plugin named by this netconf's `ipam.type`, like the
   * reference plugins' ipam.ExecAdd/ExecDel: the IPAM plugin gets the main
   * plugin's whole netconf (`req.config`), its config parsed by the runtime
   * with the main plugin's. ADD returns the IPAM result in 1.x form;
   * DEL/CHECK/GC return undefined.
   */
  invokeIpam(command: 'ADD' | 'DEL' | 'CHECK' | 'GC'): Promise<CniResult | undefined>
  /**
   * Delegates to the plugin named by `conf.type` with `conf` as its whole
   * stdin (embedded or exec'd), as a meta plugin does with invoke.DelegateAdd
   * (flannel's CNI plugin delegates to bridge this way). The runtime parses
   * `conf` once with that plugin's `parse` (and its IPAM plugin's). Same
   * attachment, same firewall transaction. ADD returns its result; DEL/CHECK
   * undefined.
   */
  invokeDelegate(command: 'ADD' | 'DEL' | 'CHECK', conf: PluginNetConf): Promise<CniResult | undefined>
  /**
   * The firewall transaction of the chain this invocation belongs to
   * (kernel/netfilter/firewall.ts), on the backend the plugin's config
   * chose (EmbeddedPlugin.firewallUse): the plugin states what it needs
   * (masquerade, published ports, accepted forwarding) on it; the runtime
   * commits it, with what the other plugins stated, once the whole chain has
   * succeeded (nothing is applied when it fails). A chain has one
   * transaction per backend its plugins use. CHECK and STATUS only read:
   * they get a closed one, whose changes throw and whose checks work.
   */
  firewall: FirewallTx
}

/**
 * Which firewall backend a plugin's needs go to, with its config
 * (EmbeddedPlugin.firewallUse); the runtime resolves it once per chain
 * (libcni/chain.ts) and hands the plugin that backend's transaction.
 */
export interface FirewallUse {
  /** Whether the config states firewall needs: the backend's programs are then required. */
  needs: boolean
  /** The backend the config names in its own field (bridge `ipMasqBackend`, portmap `backend`). */
  named?: FirewallBackendName
  /**
   * With none named: `default`, the reference plugins' rule
   * (backends/index.ts defaultFirewallBackend), or `network`, the network's
   * backend: the first one a plugin of the chain names, else that rule.
   */
  otherwise: 'default' | 'network'
}

/** What a plugin's `parse` knows of the invocation besides its netconf. */
export interface ParseContext {
  command: CniCommand
  containerId: string
  ifName: string
  /** CNI_ARGS pairs */
  args: Array<[string, string]>
}

/**
 * An in-process plugin, owning its config: `parse` turns the stdin netconf
 * (the conflist entry with name, cniVersion, runtimeConfig; no prevResult)
 * into the typed config C, and the runtime parses every entry of a chain
 * once, before the first plugin runs, then hands each plugin its C.
 *
 * `parse` refuses a field a user can fix with fields.ts's InvalidField,
 * named under `at` (`plugins[1].ingressPolicy`); the runtime refuses those
 * before anything runs, for every command. Its other errors are the plugin's
 * own (the reference plugin's wording): an ADD fails with them before the
 * chain starts; a DEL, CHECK or GC fails that plugin's step. Checks that only
 * an ADD makes (ctx.command) belong in `parse` too. Results are 1.x.
 */
export interface EmbeddedPlugin<C = unknown> {
  parse(conf: PluginNetConf, at: string, ctx: ParseContext): C
  /**
   * The programs the plugin runs with this config (the runtime refuses a
   * request when one is missing); those of its firewall backend are added
   * by the runtime (firewallUse).
   */
  programs(conf: C): string[]
  /** Which firewall backend its needs go to; absent: it states none. */
  firewallUse?(conf: C): FirewallUse
  add(req: PluginRequest, conf: C): Promise<CniResult>
  del(req: PluginRequest, conf: C): Promise<void>
  check(req: PluginRequest, conf: C): Promise<void>
  gc?(req: PluginRequest, conf: C): Promise<void>
  status?(req: PluginRequest, conf: C): Promise<void>
}
