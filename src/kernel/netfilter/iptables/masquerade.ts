/**
 * Masquerade, as the reference plugins' IP masquerade rules
 * (pkg/ip/ipmasq_linux.go and pkg/utils/utils.go, containernetworking/plugins
 * v1.1.1), used by the bridge plugin's masquerade and by overlay:
 *
 *   nat POSTROUTING -s <ip>/32 -m comment --comment "name: \"<net>\" id: \"<cid>\"" -j CNI-<hash>
 *   CNI-<hash>      -d <subnet> -m comment --comment ... -j ACCEPT
 *   CNI-<hash>      ! -d 224.0.0.0/4 (ff00::/8) -m comment --comment ... -j MASQUERADE
 *
 * where CNI-<hash> = ("CNI-" + hex(sha512(net + cid)))[:28]. Teardown needs no
 * netns and no addresses: the chain name derives from network and container
 * id, so the chain and every jump to it can always be removed (unlike the
 * reference, which leaks them when the netns is gone: plugins#810).
 *
 * setupIpMasq / teardownIpMasq record their changes on the chain's
 * transaction: they reach the kernel when the runtime commits it.
 */
import {createHash} from 'node:crypto'
import {familyOf, type Family} from '../../ip/addr.js'
import {saveForm} from './format.js'
import type {Tx} from './ruleset.js'
import type {NetfilterTx} from './transaction.js'

const MAX_CHAIN_LENGTH = 28
const CHAIN_PREFIX = 'CNI-'

/** utils.MustFormatHashWithPrefix: prefix + hex(sha512(toHash)), cut to `length`. */
export function formatHashWithPrefix(length: number, prefix: string, toHash: string): string {
  if (prefix.length >= length || length > 128) throw new Error('invalid length')
  return (prefix + createHash('sha512').update(toHash).digest('hex')).slice(0, length)
}

/** utils.MustFormatChainNameWithPrefix: "CNI-" + prefix + hash of name+id, 28 chars. */
export function formatChainName(name: string, id: string, prefix = ''): string {
  return formatHashWithPrefix(MAX_CHAIN_LENGTH, CHAIN_PREFIX + prefix, name + id)
}

/** Go's %q for the strings CNI allows in names and ids (and a best effort for others). */
export function goQuote(s: string): string {
  let out = '"'
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    if (ch === '"' || ch === '\\') out += `\\${ch}`
    else if (ch === '\n') out += '\\n'
    else if (ch === '\t') out += '\\t'
    else if (ch === '\r') out += '\\r'
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`
    else out += ch
  }
  return out + '"'
}

/** utils.FormatComment: `name: "<net>" id: "<cid>"`. */
export function formatComment(name: string, id: string): string {
  return `name: ${goQuote(name)} id: ${goQuote(id)}`
}

/** The masquerade rules for one address, in the order SetupIPMasq adds them. */
export function masqRules(chain: string, comment: string, address: string): {accept: string; masq: string; jump: string} {
  const ip = address.split('/')[0]!
  const multicast = familyOf(ip) === 4 ? '224.0.0.0/4' : 'ff00::/8'
  return {
    accept: saveForm(['-d', address, '-j', 'ACCEPT', '-m', 'comment', '--comment', comment]),
    masq: saveForm(['!', '-d', multicast, '-j', 'MASQUERADE', '-m', 'comment', '--comment', comment]),
    jump: saveForm(['-s', ip, '-j', chain, '-m', 'comment', '--comment', comment]),
  }
}

/** Records the masquerade setup for the addresses of one family on a Tx. */
export function planIpMasq(tx: Tx, netName: string, containerId: string, addresses: string[]): void {
  const chain = formatChainName(netName, containerId)
  const comment = formatComment(netName, containerId)
  for (const address of addresses) {
    const r = masqRules(chain, comment, address)
    tx.ensureChain('nat', chain)
    tx.appendUnique('nat', chain, r.accept)
    tx.appendUnique('nat', chain, r.masq)
    tx.appendUnique('nat', 'POSTROUTING', r.jump)
  }
}

/** Removes the masquerade chain of net+id and every jump to it. */
export function planIpMasqTeardown(tx: Tx, netName: string, containerId: string): void {
  tx.removeChain('nat', formatChainName(netName, containerId))
}

function byFamily(addresses: readonly string[]): Map<Family, string[]> {
  const m = new Map<Family, string[]>()
  for (const address of addresses) {
    const f = familyOf(address.split('/')[0]!)
    m.set(f, [...(m.get(f) ?? []), address])
  }
  return m
}

/** ip.SetupIPMasq for every address (CIDR with the subnet prefix), recorded on `nf`. */
export async function setupIpMasq(nf: NetfilterTx, netName: string, containerId: string, addresses: readonly string[]): Promise<void> {
  const fam = byFamily(addresses)
  if (fam.size === 0) return
  await nf.plan({families: [...fam.keys()], tables: ['nat']}, (txs) => {
    for (const [f, tx] of txs) planIpMasq(tx, netName, containerId, fam.get(f)!)
  })
}

/**
 * ip.TeardownIPMasq, idempotent, no netns needed. With `addresses` only their
 * families are looked at; without, both IPv4 and IPv6. Recorded on `nf`.
 */
export async function teardownIpMasq(nf: NetfilterTx, netName: string, containerId: string, addresses?: readonly string[]): Promise<void> {
  const families: Family[] = addresses && addresses.length ? [...byFamily(addresses).keys()] : [4, 6]
  await nf.plan({families, tables: ['nat'], optionalFamilies: [6]}, (txs) => {
    for (const tx of txs.values()) planIpMasqTeardown(tx, netName, containerId)
  })
}
