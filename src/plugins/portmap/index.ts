/**
 * portmap, as containernetworking/plugins v1.1.1 (plugins/meta/portmap),
 * iptables backend: same chains, rules, comments and hashes, but ADD and DEL
 * record their changes on the request's netfilter transaction, which the
 * runtime commits once for the whole chain (one iptables-restore per family).
 *
 * nat table:
 *   PREROUTING / OUTPUT  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
 *   POSTROUTING (first)  -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
 *   CNI-HOSTPORT-MASQ    -m mark --mark <bit>/<bit> -j MASQUERADE
 *   CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark <bit>/<bit>
 *   CNI-HOSTPORT-DNAT    -p <proto> -m comment --comment "dnat name: \"<net>\" id: \"<cid>\"" -m multiport --dports <ports> -j CNI-DN-<hash>
 *   CNI-DN-<hash>        per mapping: hairpin SETMARK, localhost SETMARK (v4), DNAT
 *
 * Differences from the reference, on purpose:
 *  - DEL removes CNI-DN-<hash> (and the old CNI-SN-<hash>) by name, with or
 *    without runtimeConfig.portMappings or prevResult.
 *  - CHECK only checks the families the container has (reference 1.1.1 checks
 *    the IPv4 rules in ip6tables too and fails for IPv4-only: plugins#819).
 *  - Stale UDP conntrack entries for the host ports are not flushed (the
 *    reference does it through netlink; informative only there).
 */
import {writeSysctl} from '../../kernel/sysctl.js'
import {routeGetDev} from '../../kernel/ip/route-get.js'
import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type PluginRequest, type PortMapping, type Protocol} from '../types.js'
import {canonicalIp, type Family} from '../../kernel/ip/addr.js'
import {readStates, saveForm, type Ruleset, type Tx} from '../../kernel/netfilter/iptables.js'
import {formatChainName} from '../ipmasq/index.js'

export const TOP_LEVEL_DNAT_CHAIN = 'CNI-HOSTPORT-DNAT'
export const SET_MARK_CHAIN = 'CNI-HOSTPORT-SETMARK'
export const MARK_MASQ_CHAIN = 'CNI-HOSTPORT-MASQ'
export const OLD_TOP_LEVEL_SNAT_CHAIN = 'CNI-HOSTPORT-SNAT'
const DEFAULT_MARK_BIT = 13

export interface PortMapConf {
  name: string
  containerId: string
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
  const c = req.config as Record<string, unknown>
  if (c.markMasqBit != null && c.externalSetMarkChain != null) throw invalid('Cannot specify externalSetMarkChain and markMasqBit')
  const markMasqBit = c.markMasqBit == null ? DEFAULT_MARK_BIT : Number(c.markMasqBit)
  if (!Number.isInteger(markMasqBit) || markMasqBit < 0 || markMasqBit > 31) throw invalid('MasqMarkBit must be between 0 and 31')
  const strList = (v: unknown, what: string): string[] | undefined => {
    if (v == null) return undefined
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalid(`${what} must be a list of strings`)
    return v as string[]
  }
  const rc = (req.config.runtimeConfig ?? {}) as {portMappings?: unknown}
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
  const conf: PortMapConf = {
    name: req.config.name,
    containerId: req.containerId,
    snat: c.snat == null ? true : Boolean(c.snat),
    markMasqBit,
    ...(c.externalSetMarkChain != null ? {externalSetMarkChain: String(c.externalSetMarkChain)} : {}),
    ...(c.conditionsV4 != null ? {conditionsV4: strList(c.conditionsV4, 'conditionsV4')} : {}),
    ...(c.conditionsV6 != null ? {conditionsV6: strList(c.conditionsV6, 'conditionsV6')} : {}),
    portMappings,
  }
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

function markDef(bit: number): string {
  const v = `0x${(2 ** bit).toString(16)}`
  return `${v}/${v}`
}

/** trimComment: iptables comments are limited to 255 chars. */
function trimComment(val: string): string {
  return val.length <= 255 ? val : `${val.slice(0, 253)}...`
}

/** multiport takes at most 15 ports per rule. */
export function splitPortList(ports: number[]): string[] {
  const out: string[] = []
  for (let i = 0; i < ports.length; i += 15) out.push(ports.slice(i, i + 15).join(','))
  return out
}

export interface DnatChain {
  name: string
  /** Rules in CNI-HOSTPORT-DNAT that jump to the chain (save form). */
  entryRules: string[]
  /** Rules inside the chain (save form). */
  rules: string[]
}

/** genDnatChain + fillDnatRules for one container address (CIDR). */
export function dnatChain(conf: PortMapConf, containerNet: string): DnatChain {
  const isV6 = containerNet.includes(':')
  const name = formatChainName(conf.name, conf.containerId, 'DN-')
  const comment = trimComment(`dnat name: "${conf.name}" id: "${conf.containerId}"`)
  const setMarkChain = conf.externalSetMarkChain ?? SET_MARK_CHAIN
  const conditions = (isV6 ? conf.conditionsV6 : conf.conditionsV4) ?? []

  // entry rules: grouped by protocol (sorted), at most 15 ports each; every
  // mapping counts here, whatever its hostIP family (as in the reference)
  const byProto = new Map<string, number[]>()
  for (const e of conf.portMappings) byProto.set(e.protocol, [...(byProto.get(e.protocol) ?? []), e.hostPort])
  const entryRules: string[] = []
  for (const proto of [...byProto.keys()].sort()) {
    for (const ports of splitPortList(byProto.get(proto)!)) {
      entryRules.push(
        saveForm(['-m', 'comment', '--comment', comment, '-m', 'multiport', '-p', proto, '--destination-ports', ports, ...conditions, '-j', name]),
      )
    }
  }

  const ip = containerNet.split('/')[0]!
  const rules: string[] = []
  for (const e of conf.portMappings) {
    let dst: string | undefined
    if (e.hostIP) {
      const hostV6 = e.hostIP.includes(':')
      if (hostV6 !== isV6) continue
      if (!isUnspecified(e.hostIP)) dst = e.hostIP
    }
    const base = ['-p', e.protocol, '--dport', String(e.hostPort), ...(dst ? ['-d', dst] : [])]
    if (conf.snat) {
      rules.push(saveForm([...base, '-s', containerNet, '-j', setMarkChain]))
      if (!isV6) rules.push(saveForm([...base, '-s', '127.0.0.1', '-j', setMarkChain]))
    }
    const to = isV6 ? `[${canonicalIp(ip)}]:${e.containerPort}` : `${canonicalIp(ip)}:${e.containerPort}`
    rules.push(saveForm([...base, '-j', 'DNAT', '--to-destination', to]))
  }
  return {name, entryRules, rules}
}

function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || /^[0:]+$/.test(ip) // "::", "0::0", ...
}

export const TOP_LEVEL_ENTRY = saveForm(['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', TOP_LEVEL_DNAT_CHAIN])
export function setMarkRule(bit: number): string {
  return saveForm(['-m', 'comment', '--comment', 'CNI portfwd masquerade mark', '-j', 'MARK', '--set-xmark', markDef(bit)])
}
export function markMasqRule(bit: number): string {
  return saveForm(['-m', 'mark', '--mark', markDef(bit), '-j', 'MASQUERADE'])
}
export const MARK_MASQ_ENTRY = saveForm(['-m', 'comment', '--comment', 'CNI portfwd requiring masquerade', '-j', MARK_MASQ_CHAIN])

/** forwardPorts for one family, in the reference's order. */
export function planForwardPorts(tx: Tx, conf: PortMapConf, containerNet: string): void {
  if (conf.snat && conf.externalSetMarkChain == null) {
    tx.ensureChain('nat', SET_MARK_CHAIN)
    tx.appendUnique('nat', SET_MARK_CHAIN, setMarkRule(conf.markMasqBit))
    tx.ensureChain('nat', MARK_MASQ_CHAIN)
    tx.appendUnique('nat', MARK_MASQ_CHAIN, markMasqRule(conf.markMasqBit))
    tx.insertUnique('nat', 'POSTROUTING', MARK_MASQ_ENTRY)
  }
  tx.ensureChain('nat', TOP_LEVEL_DNAT_CHAIN)
  tx.appendUnique('nat', 'PREROUTING', TOP_LEVEL_ENTRY)
  tx.appendUnique('nat', 'OUTPUT', TOP_LEVEL_ENTRY)
  const dn = dnatChain(conf, containerNet)
  tx.ensureChain('nat', dn.name)
  for (const r of dn.rules) tx.appendUnique('nat', dn.name, r)
  for (const r of dn.entryRules) tx.appendUnique('nat', TOP_LEVEL_DNAT_CHAIN, r)
}

/** unforwardPorts: the per-container chains and the jumps to them, never the shared chains. */
export function planUnforwardPorts(tx: Tx, netName: string, containerId: string): void {
  tx.removeChain('nat', formatChainName(netName, containerId, 'DN-'))
  tx.removeChain('nat', formatChainName(netName, containerId, 'SN-'))
}

/** checkPorts for one family: the chain, its rules and its entry rules. Returns the problem or undefined. */
export function checkPortsIn(state: Ruleset, conf: PortMapConf, containerNet: string): string | undefined {
  const dn = dnatChain(conf, containerNet)
  const fam = state.family === 6 ? 'ipv6' : 'ipv4'
  if (!state.hasChain('nat', dn.name)) return `could not check ${fam} dnat: chain ${dn.name} not found in iptables table nat`
  for (const r of dn.rules) {
    if (!state.hasRule('nat', dn.name, r)) return `could not check ${fam} dnat: rule ${r} in chain ${dn.name} not found in table nat`
  }
  for (const r of dn.entryRules) {
    if (!state.hasRule('nat', TOP_LEVEL_DNAT_CHAIN, r)) {
      return `could not check ${fam} dnat: rule ${r} in chain ${TOP_LEVEL_DNAT_CHAIN} not found in table nat`
    }
  }
  return undefined
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

const portmap: EmbeddedPlugin = {
  precheck(req) {
    parseConfig(req)
  },
  async add(req) {
    const {conf, prevResult} = parseConfig(req)
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
    const iptables = req.netfilter.plan({families: fams.map(([f]) => f), tables: ['nat']}, (txs) => {
      for (const [f, net] of fams) planForwardPorts(txs.get(f)!, conf, net)
    })
    const [a, b] = await Promise.allSettled([localnet, iptables])
    if (b.status === 'rejected') throw wrap('unable to setup DNAT', b.reason)
    if (a.status === 'rejected') throw wrap('unable to enable route_localnet', a.reason)
    return prevResult
  },

  async del(req) {
    const {conf} = parseConfig(req)
    const fams: Family[] = [...new Set(families(conf).map(([f]) => f))]
    const targets: Family[] = fams.length ? fams : [4, 6]
    try {
      await req.netfilter.plan({families: targets, tables: ['nat'], optionalFamilies: [6]}, (txs) => {
        for (const tx of txs.values()) planUnforwardPorts(tx, conf.name, conf.containerId)
      })
    } catch (err) {
      throw wrap('could not teardown dnat', err)
    }
  },

  async check(req) {
    const {conf, prevResult} = parseConfig(req)
    if (!prevResult) throw invalid('Required prevResult missing')
    if (conf.portMappings.length === 0) return
    const fams = families(conf)
    if (fams.length === 0) return
    const states = await readStates(
      fams.map(([f]) => f),
      ['nat'],
    )
    for (const [f, net] of fams) {
      const problem = checkPortsIn(states.get(f)!, conf, net)
      if (problem) throw new CniError(CNI_ERR.INTERNAL, problem)
    }
  },
}

export default portmap
