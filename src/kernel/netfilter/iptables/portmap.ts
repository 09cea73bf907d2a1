/**
 * Published ports, as the reference portmap plugin's iptables backend
 * (containernetworking/plugins v1.1.1, plugins/meta/portmap): same chains,
 * rules, comments and hashes.
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
 *  - removal takes CNI-DN-<hash> (and the old CNI-SN-<hash>) by name, with
 *    or without the mappings.
 *  - the check looks at the families the container has only (reference
 *    1.1.1 checks the IPv4 rules in ip6tables too and fails for IPv4-only:
 *    plugins#819).
 */
import {canonicalIp, type Family} from '../../ip/addr.js'
import type {PortForwarding, PortForwardingRemoval} from '../firewall.js'
import {saveForm} from './format.js'
import {readStates} from './io.js'
import {formatChainName} from './masquerade.js'
import type {Ruleset, Tx} from './ruleset.js'
import type {NetfilterTx} from './transaction.js'

export const TOP_LEVEL_DNAT_CHAIN = 'CNI-HOSTPORT-DNAT'
export const SET_MARK_CHAIN = 'CNI-HOSTPORT-SETMARK'
export const MARK_MASQ_CHAIN = 'CNI-HOSTPORT-MASQ'
export const OLD_TOP_LEVEL_SNAT_CHAIN = 'CNI-HOSTPORT-SNAT'

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
export function dnatChain(p: PortForwarding, containerNet: string): DnatChain {
  const isV6 = containerNet.includes(':')
  const name = formatChainName(p.network, p.containerId, 'DN-')
  const comment = trimComment(`dnat name: "${p.network}" id: "${p.containerId}"`)
  const hairpin = p.hairpinMasquerade
  // where hairpin and localhost traffic is sent to be marked (none: nowhere)
  const setMarkChain = hairpin.kind === 'chain' ? hairpin.chain : hairpin.kind === 'mark' ? SET_MARK_CHAIN : undefined
  const conditions = p.extraMatch?.[isV6 ? 6 : 4] ?? []

  // entry rules: grouped by protocol (sorted), at most 15 ports each; every
  // mapping counts here, whatever its hostIP family (as in the reference)
  const byProto = new Map<string, number[]>()
  for (const e of p.ports) byProto.set(e.protocol, [...(byProto.get(e.protocol) ?? []), e.hostPort])
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
  for (const e of p.ports) {
    let dst: string | undefined
    if (e.hostIP) {
      const hostV6 = e.hostIP.includes(':')
      if (hostV6 !== isV6) continue
      if (!isUnspecified(e.hostIP)) dst = e.hostIP
    }
    const base = ['-p', e.protocol, '--dport', String(e.hostPort), ...(dst ? ['-d', dst] : [])]
    if (setMarkChain) {
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
export function planForwardPorts(tx: Tx, p: PortForwarding, containerNet: string): void {
  const hairpin = p.hairpinMasquerade
  if (hairpin.kind === 'mark') {
    tx.ensureChain('nat', SET_MARK_CHAIN)
    tx.appendUnique('nat', SET_MARK_CHAIN, setMarkRule(hairpin.bit))
    tx.ensureChain('nat', MARK_MASQ_CHAIN)
    tx.appendUnique('nat', MARK_MASQ_CHAIN, markMasqRule(hairpin.bit))
    tx.insertUnique('nat', 'POSTROUTING', MARK_MASQ_ENTRY)
  }
  tx.ensureChain('nat', TOP_LEVEL_DNAT_CHAIN)
  tx.appendUnique('nat', 'PREROUTING', TOP_LEVEL_ENTRY)
  tx.appendUnique('nat', 'OUTPUT', TOP_LEVEL_ENTRY)
  const dn = dnatChain(p, containerNet)
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
export function checkPortsIn(state: Ruleset, p: PortForwarding, containerNet: string): string | undefined {
  const dn = dnatChain(p, containerNet)
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

/** The container's address per family it has one of, IPv4 first. */
function addressesOf(p: PortForwarding): Array<[Family, string]> {
  const out: Array<[Family, string]> = []
  const {4: v4, 6: v6} = p.addresses
  if (v4) out.push([4, v4])
  if (v6) out.push([6, v6])
  return out
}

/** forwardPorts for every family the container has an address of, recorded on `nf`. */
export async function forwardPorts(nf: NetfilterTx, p: PortForwarding): Promise<void> {
  const fams = addressesOf(p)
  if (fams.length === 0) return
  await nf.plan({families: fams.map(([f]) => f), tables: ['nat']}, (txs) => {
    for (const [f, net] of fams) planForwardPorts(txs.get(f)!, p, net)
  })
}

/** unforwardPorts in the given families (IPv6 may be missing), recorded on `nf`. */
export async function unforwardPorts(nf: NetfilterTx, r: PortForwardingRemoval): Promise<void> {
  await nf.plan({families: r.families, tables: ['nat'], optionalFamilies: [6]}, (txs) => {
    for (const tx of txs.values()) planUnforwardPorts(tx, r.network, r.containerId)
  })
}

/** checkPorts for every family the container has an address of (one read, no lock): the first problem. */
export async function checkPorts(p: PortForwarding): Promise<string | undefined> {
  const fams = addressesOf(p)
  if (fams.length === 0) return undefined
  const states = await readStates(
    fams.map(([f]) => f),
    ['nat'],
  )
  for (const [f, net] of fams) {
    const problem = checkPortsIn(states.get(f)!, p, net)
    if (problem) return problem
  }
  return undefined
}
