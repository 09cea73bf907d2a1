import {InvalidField} from '../plugins/fields.js'
import {embeddedPlugin} from '../plugins/registry/index.js'
import type {CniCommand, CniResult, EmbeddedPlugin, FirewallUse, NetConfList, ParseContext, PluginConf, PluginNetConf} from '../plugins/types.js'
import {defaultFirewallBackend, firewallBackend, type FirewallBackendName} from '../kernel/netfilter/backends/index.js'
import {requirePrograms} from '../sys/exec.js'
import * as validate from './validate.js'
import {isTypedRuntimeConf} from './conf.js'

/**
 * A chain's configs, parsed once per request before the first plugin runs:
 * each entry's stdin is built as libcni's buildOneConfig does, and each
 * embedded plugin (and the embedded IPAM plugin of a main plugin) parses it
 * with its own `parse` into the typed config it then gets for ADD, CHECK,
 * DEL and GC. Exec'd plugins parse their own config.
 *
 * The firewall backend of each plugin is resolved here too, once: the one
 * its config names (EmbeddedPlugin.firewallUse), else the reference's rule
 * or the network's backend (the first one a plugin of the chain names).
 * The runtime hands each plugin the transaction of its backend.
 */

/** The attachment values a stdin and a parse depend on (runtime.ts RuntimeConf). */
interface Attachment {
  containerId: string
  ifName: string
  args?: Array<[string, string]>
  capabilityArgs?: Record<string, unknown>
}

/** One plugin of a chain (or its IPAM plugin, or a delegate), parsed. */
export interface ParsedPlugin {
  type: string
  /** Where its fields are named in refusals: `plugins[1]`. */
  at: string
  /** The in-process plugin; undefined when the type is exec'd. */
  plugin?: EmbeddedPlugin
  /** The typed config `plugin.parse` returned. */
  conf?: unknown
  /**
   * The plugin's own parser refused the config (the reference plugin's
   * wording): an ADD fails with it before the chain starts, a DEL, CHECK or
   * GC when that plugin's turn comes, as the plugin itself would.
   */
  error?: unknown
  /** The IPAM plugin named by the netconf's `ipam.type` (embedded main plugins only), on the same netconf. */
  ipam?: ParsedPlugin
  /**
   * The firewall backend whose transaction the plugin gets (`req.firewall`;
   * its IPAM plugin and its delegates share it): its config's choice, else
   * the network's.
   */
  backend: FirewallBackendName
}

/** One plugin's stdin, as libcni's buildOneConfig: the entry, name, cniVersion, prevResult, the declared runtimeConfig. */
export function stdinFor(conf: NetConfList, plugin: PluginConf, prev: CniResult | undefined, rt: Attachment): PluginNetConf {
  const stdin: PluginNetConf = {...plugin, name: conf.name, cniVersion: conf.cniVersion}
  if (prev) stdin.prevResult = prev
  const rc: Record<string, unknown> = {}
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
    if (on && rt.capabilityArgs && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap]
  }
  if (Object.keys(rc).length > 0) stdin.runtimeConfig = rc
  return stdin
}

export function parseContext(command: CniCommand, rt: Attachment): ParseContext {
  return {command, containerId: rt.containerId, ifName: rt.ifName, args: rt.args ?? []}
}

/** Runs one parse: a refusal by field name (InvalidField) is thrown, any other error kept for the plugin's turn. */
function parseWith(plugin: EmbeddedPlugin, stdin: PluginNetConf, at: string, ctx: ParseContext): {conf?: unknown; error?: unknown} {
  try {
    return {conf: plugin.parse(stdin, at, ctx)}
  } catch (err) {
    if (err instanceof InvalidField) throw err
    return {error: err}
  }
}

/**
 * Parses one plugin's stdin with its embedded plugin (`embedded`: whether
 * embedded types run in-process), then with its embedded IPAM plugin.
 * `network`: the network's firewall backend (a delegate's: its caller's);
 * not given, the plugin is its whole chain.
 */
export function parsePlugin(stdin: PluginNetConf, at: string, ctx: ParseContext, embedded: boolean, network?: FirewallBackendName): ParsedPlugin {
  const p = parseOne(stdin, at, ctx, embedded)
  const auto = once(defaultFirewallBackend)
  return withBackend(p, network ?? networkBackend([p], auto), auto)
}

function parseOne(stdin: PluginNetConf, at: string, ctx: ParseContext, embedded: boolean): ParsedPlugin {
  const type = stdin.type
  const plugin = embedded && typeof type === 'string' ? embeddedPlugin(type) : undefined
  // the backend is set once the chain is parsed (withBackend)
  if (!plugin) return {type, at, backend: 'iptables'}
  const parsed: ParsedPlugin = {type, at, plugin, backend: 'iptables', ...parseWith(plugin, stdin, at, ctx)}
  // an exec'd main plugin execs its IPAM plugin itself
  const ipamType = stdin.ipam?.type
  if (typeof ipamType === 'string' && ipamType !== '') {
    const ipam = embeddedPlugin(ipamType)
    parsed.ipam = {type: ipamType, at, backend: 'iptables', ...(ipam ? {plugin: ipam, ...parseWith(ipam, stdin, at, ctx)} : {})}
  }
  return parsed
}

function once<T>(fn: () => T): () => T {
  let v: {value: T} | undefined
  return () => (v ??= {value: fn()}).value
}

/** What a parsed plugin's config asks of the firewall (none when it did not parse). */
function firewallUseOf(p: ParsedPlugin): FirewallUse | undefined {
  return p.plugin && p.error === undefined ? p.plugin.firewallUse?.(p.conf) : undefined
}

/**
 * The network's firewall backend: the first one a plugin of the chain names
 * (bridge `ipMasqBackend`, portmap `backend`), else the reference's rule
 * (backends/index.ts defaultFirewallBackend; `auto`: it, looked up once).
 */
export function networkBackend(chain: ParsedPlugin[], auto: () => FirewallBackendName = defaultFirewallBackend): FirewallBackendName {
  for (const p of chain) {
    const named = firewallUseOf(p)?.named
    if (named) return named
  }
  return auto()
}

/** Sets the backend of a plugin (and of its IPAM plugin): its config's choice, else the reference's rule or the network's. */
function withBackend(p: ParsedPlugin, network: FirewallBackendName, auto: () => FirewallBackendName): ParsedPlugin {
  const use = firewallUseOf(p)
  p.backend = use?.named ?? (use?.otherwise === 'default' ? auto() : network)
  if (p.ipam) p.ipam.backend = p.backend
  return p
}

/**
 * The whole request, before the first plugin runs: the request's own values
 * (validate.ts: names, CNI_ARGS, capability args, in canonical form) and the
 * entry of every plugin of the chain, parsed as its stdin (without
 * prevResult) will be. A refusal that names a field is thrown here.
 */
export function parseRequest<R extends Attachment>(command: CniCommand, conf: NetConfList, given: R, embedded: boolean): {rt: R; chain: ParsedPlugin[]} {
  const capabilityArgs = validate.request(conf, given, isTypedRuntimeConf(given))
  const rt = capabilityArgs === undefined ? given : {...given, capabilityArgs}
  const ctx = parseContext(command, rt)
  const chain = conf.plugins.map((p, i) => parseOne(stdinFor(conf, p, undefined, rt), `plugins[${i}]`, ctx, embedded))
  const auto = once(defaultFirewallBackend)
  const network = networkBackend(chain, auto)
  for (const p of chain) withBackend(p, network, auto)
  return {rt, chain}
}

/** The plugins of a parsed chain, each main plugin followed by its IPAM plugin. */
function allOf(chain: ParsedPlugin[]): ParsedPlugin[] {
  return chain.flatMap((p) => (p.ipam ? [p, p.ipam] : [p]))
}

/**
 * Fails before anything runs when a program an embedded plugin of the chain
 * needs with its config is not installed (one line naming it and its Debian
 * package), so a missing `nft` or `iptables-restore` never leaves a half-done
 * ADD or DEL. A plugin that states firewall needs also needs the programs
 * of its backend (and only of its backend).
 */
export function requireProgramsOf(chain: ParsedPlugin[], network: string): void {
  for (const p of allOf(chain)) {
    if (!p.plugin || p.error !== undefined) continue
    const fw = firewallUseOf(p)?.needs ? firewallBackend(p.backend).programs : []
    requirePrograms([...p.plugin.programs(p.conf), ...fw], `by the ${p.type} plugin of network "${network}"`)
  }
}

/** The first refusal of a plugin's own parser in the chain, with the type of the chain's plugin it belongs to. */
export function firstParseError(chain: ParsedPlugin[]): {type: string; error: unknown} | undefined {
  for (const p of chain) {
    for (const q of p.ipam ? [p, p.ipam] : [p]) if (q.error !== undefined) return {type: p.type, error: q.error}
  }
  return undefined
}
