/**
 * Masquerade on nftables, exactly the reference plugins' nftables ipMasq
 * layout (pkg/ip/ipmasq_nftables_linux.go, containernetworking/plugins
 * v1.6+), so that a reference bridge DEL removes our rules and ours removes
 * theirs:
 *
 *   table inet cni_plugins_masquerade
 *     chain postrouting (nat, postrouting, 100), rewritten on every ADD:
 *       ip daddr 224.0.0.0/4 return ; ip6 daddr ff00::/8 return ; goto masq_checks
 *     chain masq_checks, one rule per container address:
 *       ip saddr <ip> ip daddr != <subnet> masquerade comment "<C>"
 *
 * <C> = hash16(net) "-" hash16(ifname ":" id) ", net: " net ", if: " ifname ", id: " id,
 * cut to 128 characters, hash16 = the first 16 hex digits of SHA-512.
 *
 * Differences from the reference, on purpose: ADD does not list masq_checks
 * to drop an earlier copy of the container's rules (the cost of an ADD must
 * not grow with the host; a chain that failed committed nothing, and DEL
 * removes every copy); a removal without the interface name takes every
 * rule of the container on the network.
 */
import {createHash} from 'node:crypto'
import {familyOf} from '../../ip/addr.js'
import type {Masquerade, MasqueradeRemoval} from '../firewall.js'
import type {ListedTable} from './io.js'
import {COMMENT_MAX, addr, comment, ident, ifname, kw, net, type NftScript} from './script.js'

export const MASQ_TABLE = 'cni_plugins_masquerade'
export const MASQ_CHAIN = 'masq_checks'
export const MASQ_POSTROUTING = 'postrouting'
const TABLE_COMMENT = 'Masquerading for plugins from github.com/containernetworking/plugins'
const CHAIN_COMMENT = 'Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet'
const DEFAULT_IFNAME = 'eth0'

/** The first 16 hex digits of SHA-512(s). */
export function hash16(s: string): string {
  return createHash('sha512').update(s).digest('hex').slice(0, 16)
}

/** The rules' comment prefix of one attachment: hash16(net)-hash16(if:id). */
export function masqPrefix(network: string, ifName: string, containerId: string): string {
  return `${hash16(network)}-${hash16(`${ifName}:${containerId}`)}`
}

/** The rules' comment of one attachment (the reference's, quotes removed, at most 128 characters). */
export function masqComment(network: string, ifName: string, containerId: string): string {
  const strip = (s: string) => s.replace(/"/g, '')
  const c = `${masqPrefix(network, ifName, containerId)}, net: ${strip(network)}, if: ${strip(ifName)}, id: ${strip(containerId)}`
  return c.slice(0, COMMENT_MAX)
}

/** The shared table and chains, postrouting rewritten (idempotent). */
export function masqShared(s: NftScript): void {
  s.addTable('inet', MASQ_TABLE, TABLE_COMMENT)
  s.addChain('inet', MASQ_TABLE, MASQ_CHAIN, {comment: CHAIN_COMMENT})
  s.addChain('inet', MASQ_TABLE, MASQ_POSTROUTING, {base: {type: 'nat', hook: 'postrouting', priority: 100}})
  s.flushChain('inet', MASQ_TABLE, MASQ_POSTROUTING)
  s.addRule('inet', MASQ_TABLE, MASQ_POSTROUTING, [kw('ip'), kw('daddr'), net('224.0.0.0/4'), kw('return')])
  s.addRule('inet', MASQ_TABLE, MASQ_POSTROUTING, [kw('ip6'), kw('daddr'), net('ff00::/8'), kw('return')])
  s.addRule('inet', MASQ_TABLE, MASQ_POSTROUTING, [kw('goto'), ident(MASQ_CHAIN)])
}

/** Records the masquerade of one attachment's addresses (CIDR: the prefix is the subnet left alone). */
export function planMasquerade(s: NftScript, m: Masquerade): void {
  if (m.addresses.length === 0) return
  const ifName = m.ifName ?? DEFAULT_IFNAME
  // each part must be comment text itself: the reference strips quotes and cuts at 128, which would hide a bad value
  comment(m.network)
  comment(m.containerId)
  ifname(ifName)
  const c = masqComment(m.network, ifName, m.containerId)
  masqShared(s)
  for (const a of m.addresses) {
    const ip = a.split('/')[0]!
    const f = familyOf(ip)
    const k = f === 4 ? kw('ip') : kw('ip6')
    s.addRule('inet', MASQ_TABLE, MASQ_CHAIN, [k, kw('saddr'), addr(ip, f), k, kw('daddr'), kw('!='), net(a, f), kw('masquerade')], c)
  }
}

/** Whether a listed rule's comment belongs to the attachment being removed. */
export function masqMatcher(r: MasqueradeRemoval): (comment: string | undefined) => boolean {
  if (r.ifName !== undefined) {
    const prefix = masqPrefix(r.network, r.ifName, r.containerId)
    return (c) => c !== undefined && c.startsWith(prefix)
  }
  const netPrefix = `${hash16(r.network)}-`
  const tail = `, id: ${r.containerId.replace(/"/g, '')}`
  return (c) => c !== undefined && c.startsWith(netPrefix) && c.endsWith(tail)
}

/** Records the deletion of the attachment's rules found in the listed table (none: nothing). */
export function planMasqueradeRemoval(s: NftScript, listed: ListedTable | undefined, r: MasqueradeRemoval): void {
  if (!listed) return
  const mine = masqMatcher(r)
  for (const rule of listed.rules) if (rule.chain === MASQ_CHAIN && mine(rule.comment)) s.deleteRule('inet', MASQ_TABLE, MASQ_CHAIN, rule.handle)
}
