/**
 * portmap, as containernetworking/plugins v1.1.1 (plugins/meta/portmap): its
 * config, its choice of container addresses, route_localnet and its errors.
 * ADD and DEL state the published ports on the request's firewall
 * transaction (kernel/netfilter/firewall.ts), which the runtime commits once
 * for the whole chain; the rules (CNI-HOSTPORT-*, CNI-DN-<hash>, the
 * reference's own) are the backend's: kernel/netfilter/iptables/portmap.ts.
 *
 * Differences from the reference, on purpose:
 *  - DEL removes the container's chains by name, with or without
 *    runtimeConfig.portMappings or prevResult.
 *  - CHECK only checks the families the container has (reference 1.1.1 checks
 *    the IPv4 rules in ip6tables too and fails for IPv4-only: plugins#819).
 *  - Stale UDP conntrack entries for the host ports are not flushed (the
 *    reference does it through netlink; informative only there).
 */
import {writeSysctl} from '../../kernel/sysctl.js'
import {routeGetDev} from '../../kernel/ip/route-get.js'
import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type ParseContext, type PluginNetConf, type PluginRequest, type PortMapping, type Protocol} from '../types.js'
import * as f from '../fields.js'
import type {Family} from '../../kernel/ip/addr.js'
import {defaultFirewallBackend, isFirewallBackendName, type FirewallBackendName} from '../../kernel/netfilter/backends/index.js'
import type {HairpinMasquerade, PortForwarding} from '../../kernel/netfilter/firewall.js'

const DEFAULT_MARK_BIT = 13

export interface PortMapConf {
  name: string
  containerId: string
  /** `backend` (plugins >= 1.6): where the ports are published; absent: the reference's rule. */
  backend?: FirewallBackendName
  snat: boolean
  markMasqBit: number
  externalSetMarkChain?: string
  conditionsV4?: string[]
  conditionsV6?: string[]
  portMappings: PortMapping[]
  /** The container addresses (CIDR, with the subnet prefix) per family. */
  contIPv4?: string
  contIPv6?: string
}

function invalid(msg: string): CniError {
  return new CniError(CNI_ERR.INVALID_NETCONF, msg)
}

/**
 * A mapping's protocol: tcp, udp or sctp, as iptables takes them (any case).
 * The runtime has parsed the capability args of every chain it runs; this
 * is for a netconf another runtime wrote (`ctrnet cni plugin`).
 */
function protocolOf(v: unknown): Protocol {
  const p = String(v ?? '').toLowerCase()
  if (p !== 'tcp' && p !== 'udp' && p !== 'sctp') throw invalid(`Invalid protocol: ${JSON.stringify(String(v ?? ''))}`)
  return p
}

/** parseConfig of the reference: defaults, validation, container IP per family. */
export function parseConfig(req: Pick<PluginRequest, 'config' | 'containerId' | 'ifName'>): {conf: PortMapConf; prevResult?: CniResult} {
  return withPrevResult(loadPortMapConf(req.config, req.containerId), req)
}

/**
 * The part of parseConfig that reads the netconf (not prevResult): the
 * reference's defaults and validation (the plugin's `parse` refuses by field
 * name first what must not reach iptables).
 */
export function loadPortMapConf(config: PluginNetConf, containerId: string): PortMapConf {
  const c = config as Record<string, unknown>
  if (c.backend != null && !isFirewallBackendName(c.backend)) throw invalid(`unrecognized backend ${JSON.stringify(String(c.backend))}`)
  const backend = c.backend as FirewallBackendName | undefined
  refuseWrongBackend(c, backend)
  if (c.markMasqBit != null && c.externalSetMarkChain != null) throw invalid('Cannot specify externalSetMarkChain and markMasqBit')
  const markMasqBit = c.markMasqBit == null ? DEFAULT_MARK_BIT : Number(c.markMasqBit)
  if (!Number.isInteger(markMasqBit) || markMasqBit < 0 || markMasqBit > 31) throw invalid('MasqMarkBit must be between 0 and 31')
  const strList = (v: unknown, what: string): string[] | undefined => {
    if (v == null) return undefined
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`${what} must be a list of strings`)
    return v as string[]
  }
  const rc = (config.runtimeConfig ?? {}) as {portMappings?: unknown}
  const pms = rc.portMappings == null ? [] : rc.portMappings
  if (!Array.isArray(pms)) throw invalid('runtimeConfig.portMappings must be a list')
  const portMappings: PortMapping[] = pms.map((p: Record<string, unknown>) => ({
    hostPort: Number(p.hostPort ?? 0),
    containerPort: Number(p.containerPort ?? 0),
    protocol: protocolOf(p.protocol),
    ...(p.hostIP ? {hostIP: String(p.hostIP)} : {}),
  }))
  for (const pm of portMappings) {
    if (!(pm.containerPort > 0)) throw invalid(`Invalid container port number: ${pm.containerPort}`)
    if (!(pm.hostPort > 0)) throw invalid(`Invalid host port number: ${pm.hostPort}`)
    if (pm.containerPort > 65535 || pm.hostPort > 65535) throw invalid(`Invalid port number: ${pm.hostPort}:${pm.containerPort}`)
  }
  return {
    name: config.name,
    containerId,
    ...(backend ? {backend} : {}),
    snat: c.snat == null ? true : Boolean(c.snat),
    markMasqBit,
    ...(c.externalSetMarkChain != null ? {externalSetMarkChain: String(c.externalSetMarkChain)} : {}),
    ...(c.conditionsV4 != null ? {conditionsV4: strList(c.conditionsV4, 'conditionsV4')} : {}),
    ...(c.conditionsV6 != null ? {conditionsV6: strList(c.conditionsV6, 'conditionsV6')} : {}),
    portMappings,
  }
}

/**
 * ensureBackend of the reference: options of the other backend are refused
 * (externalSetMarkChain, and conditions in iptables form, a first element
 * that starts with - or !, are iptables-only). ctrnet reads conditions in
 * iptables form only (checkFields), so only nftables can be the wrong one.
 */
function refuseWrongBackend(c: Record<string, unknown>, named: FirewallBackendName | undefined): void {
  const iptablesOnly: string[] = []
  if (c.externalSetMarkChain != null) iptablesOnly.push('externalSetMarkChain')
  for (const k of ['conditionsV4', 'conditionsV6']) {
    const first = Array.isArray(c[k]) ? (c[k] as unknown[])[0] : undefined
    if (typeof first === 'string' && (first.startsWith('-') || first.startsWith('!'))) iptablesOnly.push(k)
  }
  if (iptablesOnly.length === 0) return
  if ((named ?? defaultFirewallBackend()) !== 'nftables') return
  throw invalid(`nftables backend was requested but configuration contains iptables-specific options [${iptablesOnly.join(' ')}]`)
}

/** The container IP per family, from prevResult (at run time: the parsed config has none). */
function withPrevResult(parsed: PortMapConf, req: Pick<PluginRequest, 'config' | 'ifName'>): {conf: PortMapConf; prevResult?: CniResult} {
  const conf = {...parsed}
  const prev = req.config.prevResult
  if (prev) {
    const ifaces = prev.interfaces ?? []
    for (const ip of prev.ips ?? []) {
      const v4 = !ip.address.includes(':')
      if ((v4 && conf.contIPv4) || (!v4 && conf.contIPv6)) continue
      // skip known non-sandbox interfaces
      if (ip.interface != null) {
        const i = ip.interface
        if (i >= 0 && i < ifaces.length && (ifaces[i]!.name !== req.ifName || !ifaces[i]!.sandbox)) continue
      }
      if (v4) conf.contIPv4 = ip.address
      else conf.contIPv6 = ip.address
    }
  }
  return {conf, ...(prev ? {prevResult: prev} : {})}
}

/**
 * What portmap's config asks of the firewall, in the seam's words: the
 * network's name, the mappings, the container's address per family, the
 * hairpin masquerade (snat, markMasqBit, externalSetMarkChain) and the extra
 * match arguments (conditionsV4/V6).
 */
export function portForwarding(conf: PortMapConf): PortForwarding {
  const hairpin: HairpinMasquerade = !conf.snat
    ? {kind: 'none'}
    : conf.externalSetMarkChain != null
      ? {kind: 'chain', chain: conf.externalSetMarkChain}
      : {kind: 'mark', bit: conf.markMasqBit}
  const extraMatch: Partial<Record<Family, readonly string[]>> = {
    ...(conf.conditionsV4 ? {4: conf.conditionsV4} : {}),
    ...(conf.conditionsV6 ? {6: conf.conditionsV6} : {}),
  }
  return {
    network: conf.name,
    containerId: conf.containerId,
    ports: conf.portMappings,
    addresses: {...(conf.contIPv4 ? {4: conf.contIPv4} : {}), ...(conf.contIPv6 ? {6: conf.contIPv6} : {})},
    hairpinMasquerade: hairpin,
    ...(conf.conditionsV4 || conf.conditionsV6 ? {extraMatch} : {}),
  }
}

function families(conf: PortMapConf): Array<[Family, string]> {
  const out: Array<[Family, string]> = []
  if (conf.contIPv4) out.push([4, conf.contIPv4])
  if (conf.contIPv6) out.push([6, conf.contIPv6])
  return out
}

function wrap(what: string, err: unknown): CniError {
  if (err instanceof CniError) return err
  return new CniError(CNI_ERR.INTERNAL, what, err instanceof Error ? err.message : String(err))
}

/** The fields of a portmap entry that reach iptables, refused by name (`plugins[1].conditionsV4[0]`). */
function checkFields(c: PluginNetConf, at: string): void {
  const opt = <T>(k: string, parse: (v: unknown, field: string) => T) => (f.given(c[k]) ? parse(c[k], `${at}.${k}`) : undefined)
  opt('backend', f.firewallBackendName)
  opt('snat', f.bool)
  opt('markMasqBit', (v, field) => f.intIn(v, field, 0, 31))
  opt('externalSetMarkChain', f.chainName)
  for (const k of ['conditionsV4', 'conditionsV6']) {
    if (f.given(c[k])) f.list(c[k], `${at}.${k}`).forEach((s, i) => f.iptablesArg(s, `${at}.${k}[${i}]`))
  }
}

const portmap: EmbeddedPlugin<PortMapConf> = {
  parse(config: PluginNetConf, at: string, ctx: ParseContext): PortMapConf {
    checkFields(config, at)
    return loadPortMapConf(config, ctx.containerId)
  },
  programs: () => ['ip'],
  // the ports go to `backend`, else to the reference's default backend
  firewallUse: (conf) => ({needs: true, ...(conf.backend ? {named: conf.backend} : {}), otherwise: 'default'}),
  async add(req, parsed) {
    const {conf, prevResult} = withPrevResult(parsed, req)
    if (!prevResult) throw invalid('must be called as chained plugin')
    if (conf.portMappings.length === 0) return prevResult
    const fams = families(conf)
    if (fams.length === 0) return prevResult

    // route_localnet=1 on the interface routing to the container (the bridge,
    // for bridge), so that 127/8 may cross it (getRoutableHostIF); looked up
    // while the iptables changes are planned.
    const localnet =
      conf.snat && conf.contIPv4
        ? routeGetDev(conf.contIPv4.split('/')[0]!).then((dev) => {
            if (dev) writeSysctl(`net/ipv4/conf/${dev}/route_localnet`, '1')
          })
        : Promise.resolve()
    const ports = req.firewall.publishPorts(portForwarding(conf))
    const [a, b] = await Promise.allSettled([localnet, ports])
    if (b.status === 'rejected') throw wrap('unable to setup DNAT', b.reason)
    if (a.status === 'rejected') throw wrap('unable to enable route_localnet', a.reason)
    return prevResult
  },

  async del(req, parsed) {
    const {conf} = withPrevResult(parsed, req)
    const fams: Family[] = [...new Set(families(conf).map(([f]) => f))]
    const targets: Family[] = fams.length ? fams : [4, 6]
    try {
      await req.firewall.unpublishPorts({network: conf.name, containerId: conf.containerId, families: targets})
    } catch (err) {
      throw wrap('could not teardown dnat', err)
    }
  },

  async check(req, parsed) {
    const {conf, prevResult} = withPrevResult(parsed, req)
    if (!prevResult) throw invalid('Required prevResult missing')
    if (conf.portMappings.length === 0) return
    const fams = families(conf)
    if (fams.length === 0) return
    const problem = await req.firewall.checkPorts(portForwarding(conf))
    if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
  },
}

export default portmap
