/**
 * Published ports on nftables, the reference portmap plugin's nftables
 * layout (plugins/meta/portmap/portmap_nftables.go, v1.9), so that a
 * reference portmap DEL undoes our attachment and ours undoes theirs:
 *
 *   table ip cni_hostport / ip6 cni_hostport
 *     prerouting  (nat, prerouting, -100)  fib daddr type local jump hostports_all   (rewritten on ADD)
 *     output      (nat, output, -100)      fib daddr type local jump hostports_all   (rewritten on ADD)
 *     hostports_all                        jump hostip_hostports ; jump hostports    (rewritten on ADD)
 *     hostip_hostports                     (empty: older versions' hostIP rules; scanned on DEL)
 *     hostports       per mapping:  [ip daddr <hostIP>] <proto> dport <hp> dnat to <ip>:<cp> comment "<cid>"
 *     masquerading (nat, postrouting, 100) per container:
 *                     ip saddr <subnet> ip daddr <ip> ct status dnat masquerade comment "<cid>"
 *                     ip saddr 127.0.0.1 ip daddr <ip> masquerade comment "<cid>"       (IPv4)
 *
 * An ADD only adds: the tiny shared chains are flushed and re-added, the
 * container's rules appended; nothing is listed, so its cost does not grow
 * with the containers on the host. Both families go into one script. DEL
 * lists each family's table and deletes the rules whose comment is the
 * container id, in hostports, hostip_hostports and masquerading.
 *
 * Differences from the reference, on purpose: the hairpin source is the
 * container's subnet (the seam's PortForwarding.addresses prefix), not only
 * its own address, so that a sibling container on the bridge reaches it
 * through the host's published port without br_netfilter (the iptables
 * backend and portmap 1.1.1 do the same with `-s <subnet>`), and only for
 * DNATed connections (`ct status dnat`: with br_netfilter, direct traffic
 * between containers of the bridge also passes postrouting and must keep its
 * source, as the iptables backend's mark only set in the DNAT chain); the mark bit of
 * HairpinMasquerade 'mark' is not used (nft masquerades directly, as the
 * reference); 'chain' (an external iptables mark chain) and extra iptables
 * match arguments are iptables-only and refused.
 */
import type {Family} from '../../ip/addr.js'
import type {PortForwarding, PortForwardingRemoval, PublishedPort} from '../firewall.js'
import type {ListedTable} from './io.js'
import {addr, comment, dnatTarget, ident, kw, net, port, proto, type NftFamily, type NftScript, type NftWord} from './script.js'

export const HOSTPORT_TABLE = 'cni_hostport'
const TABLE_COMMENT = 'CNI portmap plugin'
export const HOSTPORTS = 'hostports'
export const HOSTIP_HOSTPORTS = 'hostip_hostports'
export const HOSTPORTS_ALL = 'hostports_all'
export const MASQUERADING = 'masquerading'
/** The chains holding per-container rules (comment = container id). */
export const CONTAINER_CHAINS = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING] as const

export const nftFamily = (f: Family): NftFamily => (f === 4 ? 'ip' : 'ip6')
const ipKw = (f: Family): NftWord => (f === 4 ? kw('ip') : kw('ip6'))

function isUnspecified(ip: string): boolean {
  return ip === '0.0.0.0' || /^[0:]+$/.test(ip)
}

/** The host address a mapping is limited to in family f: undefined = any; null = the mapping is not for f. */
function hostIpIn(e: PublishedPort, f: Family): string | undefined | null {
  if (!e.hostIP || isUnspecified(e.hostIP)) return undefined
  return e.hostIP.includes(':') === (f === 6) ? e.hostIP : null
}

/** Why the backend cannot publish these ports, or undefined. */
export function portsFault(p: PortForwarding): string | undefined {
  if (p.hairpinMasquerade.kind === 'chain') return 'an external mark chain (externalSetMarkChain) is iptables-only'
  for (const f of [4, 6] as const) if ((p.extraMatch?.[f] ?? []).length > 0) return 'match conditions in iptables syntax (conditionsV4/V6) are iptables-only'
  return undefined
}

/** The shared objects of one family: table, chains, the rewritten entry chains. */
export function hostportShared(s: NftScript, f: Family, masquerading: boolean): void {
  const fam = nftFamily(f)
  s.addTable(fam, HOSTPORT_TABLE, TABLE_COMMENT)
  s.addChain(fam, HOSTPORT_TABLE, HOSTPORTS)
  s.addChain(fam, HOSTPORT_TABLE, HOSTIP_HOSTPORTS)
  s.addChain(fam, HOSTPORT_TABLE, HOSTPORTS_ALL)
  s.flushChain(fam, HOSTPORT_TABLE, HOSTPORTS_ALL)
  s.addRule(fam, HOSTPORT_TABLE, HOSTPORTS_ALL, [kw('jump'), ident(HOSTIP_HOSTPORTS)])
  s.addRule(fam, HOSTPORT_TABLE, HOSTPORTS_ALL, [kw('jump'), ident(HOSTPORTS)])
  for (const hook of ['prerouting', 'output'] as const) {
    s.addChain(fam, HOSTPORT_TABLE, hook, {base: {type: 'nat', hook, priority: -100}})
    s.flushChain(fam, HOSTPORT_TABLE, hook)
    s.addRule(fam, HOSTPORT_TABLE, hook, [kw('fib'), kw('daddr'), kw('type'), kw('local'), kw('jump'), ident(HOSTPORTS_ALL)])
  }
  if (masquerading) s.addChain(fam, HOSTPORT_TABLE, MASQUERADING, {base: {type: 'nat', hook: 'postrouting', priority: 100}})
}

/** The container's rules in one family: [chain, rule words] in the reference's order. */
export function containerRules(p: PortForwarding, f: Family, address: string): Array<[string, NftWord[]]> {
  const ip = address.split('/')[0]!
  const out: Array<[string, NftWord[]]> = []
  for (const e of p.ports) {
    const host = hostIpIn(e, f)
    if (host === null) continue
    const dst = host === undefined ? [] : [ipKw(f), kw('daddr'), addr(host, f)]
    out.push([HOSTPORTS, [...dst, proto(e.protocol), kw('dport'), port(e.hostPort), kw('dnat'), kw('to'), dnatTarget(ip, e.containerPort, f)]])
  }
  if (p.hairpinMasquerade.kind !== 'none') {
    out.push([MASQUERADING, [ipKw(f), kw('saddr'), net(address, f), ipKw(f), kw('daddr'), addr(ip, f), kw('ct'), kw('status'), kw('dnat'), kw('masquerade')]])
    if (f === 4) out.push([MASQUERADING, [kw('ip'), kw('saddr'), addr('127.0.0.1'), kw('ip'), kw('daddr'), addr(ip, f), kw('masquerade')]])
  }
  return out
}

/** The container's address per family it has one of, IPv4 first. */
export function addressesOf(p: PortForwarding): Array<[Family, string]> {
  const out: Array<[Family, string]> = []
  const {4: v4, 6: v6} = p.addresses
  if (v4) out.push([4, v4])
  if (v6) out.push([6, v6])
  return out
}

/** Records the publishing of the container's ports, every family it has an address of, in one script. */
export function planPublish(s: NftScript, p: PortForwarding): void {
  const fault = portsFault(p)
  if (fault) throw new Error(`nftables: cannot publish the ports of ${p.containerId} : ${fault}`)
  comment(p.containerId) // the rules' comment, checked even when no rule is written
  for (const [f, address] of addressesOf(p)) {
    const rules = containerRules(p, f, address)
    hostportShared(s, f, p.hairpinMasquerade.kind !== 'none')
    for (const [chain, words] of rules) s.addRule(nftFamily(f), HOSTPORT_TABLE, chain, words, p.containerId)
  }
}

/** Records the deletion of the container's rules found in one family's listed table. */
export function planUnpublish(s: NftScript, f: Family, listed: ListedTable | undefined, r: PortForwardingRemoval): void {
  if (!listed) return
  const chains = new Set<string>(CONTAINER_CHAINS)
  for (const rule of listed.rules) {
    if (chains.has(rule.chain) && rule.comment === r.containerId) s.deleteRule(nftFamily(f), HOSTPORT_TABLE, rule.chain, rule.handle)
  }
}

/**
 * CHECK in one family, as the reference: enough rules with the container's
 * comment in hostports (one per mapping of the family) and in masquerading
 * (2 for IPv4, 1 for IPv6, when hairpin traffic is masqueraded).
 */
export function checkPortsIn(listed: ListedTable | undefined, p: PortForwarding, f: Family, address: string): string | undefined {
  const fam = nftFamily(f)
  if (!listed) return `table ${fam} ${HOSTPORT_TABLE} not found`
  const want = new Map<string, number>()
  for (const [chain] of containerRules(p, f, address)) want.set(chain, (want.get(chain) ?? 0) + 1)
  for (const [chain, n] of want) {
    const found = listed.rules.filter((r) => r.chain === chain && r.comment === p.containerId).length
    if (found < n) return `missing hostport rules in "${chain}" chain of ${fam} ${HOSTPORT_TABLE}: ${found} of ${n}`
  }
  for (const chain of ['prerouting', 'output', HOSTPORTS_ALL]) {
    if (!listed.chains.has(chain)) return `chain ${chain} not found in ${fam} ${HOSTPORT_TABLE}`
  }
  return undefined
}
