import {
  type Cidr,
  type Family,
  bigToIp,
  cidrContains,
  familyOfCidr,
  formatCidr,
  ipRange,
  lastOf,
  networkOf,
  parseCidr as parseKernelCidr,
  parseIp as parseKernelIp,
} from '../kernel/ip/addr.js'
import {hostInterfaceSubnets, hostOnLinkRouteSubnets} from '../kernel/ip/host-subnets.js'
import type {NetConfList} from '../plugins/types.js'
import {isOverlayType} from '../plugins/overlay/config.js'

export type {Cidr, Family}

/**
 * Subnet math for `network create`, as nerdctl does it (pkg/netutil/subnet):
 * automatic allocation from 10.4.1.0/24, overlap checks, host-bits check.
 * All address arithmetic goes through kernel/ip/addr.ts (ip-address, BigInt).
 *
 * Parsing here is Go's net.ParseCIDR/ParseIP as nerdctl sees it: undefined
 * instead of an error, no zone ('%'), and ::ffff:a.b.c.d stays IPv6.
 */

export const DEFAULT_CIDR = '10.4.0.0/24'
export const STARTING_CIDR = '10.4.1.0/24'

/** A CIDR as `network create` reads it, with its family and canonical network text (for messages). */
export interface Subnet extends Cidr {
  family: Family
  /** The canonical network form, e.g. 10.244.0.0/16 or 2001:db8::/64 */
  network: string
  /** The address part as typed, canonicalised (e.g. 10.244.0.1): the same as ip */
  address: string
}

/** The canonical network text of a CIDR, e.g. 10.244.0.0/16 for 10.244.0.1/16. */
export function networkText(c: Cidr): string {
  return formatCidr(networkOf(c))
}

function subnetOf(c: Cidr): Subnet {
  return {...c, family: familyOfCidr(c), network: networkText(c), address: c.ip}
}

/** Parses `ADDR/PREFIX` strictly (a prefix is required, as Go's net.ParseCIDR). Undefined when invalid. */
export function parseCidr(text: string): Subnet | undefined {
  if (text.includes('%')) return undefined
  let c: Cidr
  try {
    c = parseKernelCidr(text, {keepMapped: true})
  } catch {
    return undefined
  }
  // ip-address, which this always parsed with, takes at most two prefix digits for IPv4 (10.0.0.0/008)
  if (!c.v6 && /\/\d{3}$/.test(text)) return undefined
  return subnetOf(c)
}

/** Parses a plain IP address (no prefix). Undefined when invalid. */
export function parseIp(text: string): {family: Family; text: string} | undefined {
  if (text.includes('%')) return undefined
  try {
    const {v6, ip} = parseKernelIp(text, {keepMapped: true})
    return {family: v6 ? 6 : 4, text: ip}
  } catch {
    return undefined
  }
}

/** True when the CIDR was written with host bits set (10.244.0.1/16). */
export function hasHostBits(c: Cidr): boolean {
  return networkText(c) !== formatCidr(c)
}

/** True when the address (canonical text, of any family) is in the CIDR's network. */
export function contains(net: Cidr, ip: string): boolean {
  return cidrContains(net, ip)
}

/** nerdctl's IntersectsWithNetworks: either network contains the other's first address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.v6 !== b.v6) return false
  const ra = ipRange(a)
  const rb = ipRange(b)
  return ra.start <= rb.end && rb.start <= ra.end
}

export function overlapsAny<T extends Cidr>(c: Cidr, used: T[]): T | undefined {
  return used.find((u) => overlaps(c, u))
}

/** Gateway default: the network address + 1 (nerdctl's FirstIPInSubnet; the address itself for /32, /128). */
export function firstIp(c: Cidr): string {
  const maxPrefix = c.v6 ? 128 : 32
  const {start} = ipRange(c)
  return bigToIp(c.prefix === maxPrefix ? start : start + 1n, c.v6)
}

/** The last address of the network (nerdctl's LastIPInSubnet). */
export function lastIp(c: Cidr): string {
  return lastOf(c)
}

/**
 * nerdctl's GetFreeSubnet: start at `start` and step to the next network of the
 * same size (third octet +1 with carry for a /24) until it overlaps nothing used.
 */
export function getFreeSubnet(start: Cidr, used: Cidr[]): Subnet | undefined {
  const range = ipRange(start)
  const size = range.end - range.start + 1n
  const limit = start.v6 ? 1n << 128n : 1n << 32n
  let s = range.start
  while (s + size <= limit) {
    const cand = parseCidr(`${bigToIp(s, start.v6)}/${start.prefix}`)!
    const clash = overlapsAny(cand, used)
    if (!clash) return cand
    // Every candidate up to the end of the clashing network overlaps it too:
    // jump to the first candidate after it (same result as stepping, fewer steps).
    const after = ((ipRange(clash).end + 1n + size - 1n) / size) * size
    s = after > s + size ? after : s + size
  }
  return undefined
}

/**
 * Every subnet a network config claims, whatever its plugin types: host-local
 * `ranges` and `subnet`, static `addresses`, in any plugin's ipam (bridge,
 * macvlan, ipvlan, foreign conflists).
 */
export function confSubnets(conf: NetConfList): Subnet[] {
  const out: Subnet[] = []
  const add = (v: unknown) => {
    if (typeof v !== 'string') return
    const c = parseCidr(v)
    if (c) out.push(parseCidr(c.network)!)
  }
  for (const p of Array.isArray(conf.plugins) ? conf.plugins : []) {
    // an overlay network's subnet is in use on every host of it
    if (p && typeof p === 'object' && isOverlayType((p as {type?: unknown}).type)) add((p as {subnet?: unknown}).subnet)
    const ipam = p && typeof p === 'object' ? (p as {ipam?: unknown}).ipam : undefined
    if (!ipam || typeof ipam !== 'object') continue
    const i = ipam as Record<string, unknown>
    add(i.subnet)
    if (Array.isArray(i.ranges)) {
      for (const set of i.ranges) {
        if (!Array.isArray(set)) continue
        for (const r of set) if (r && typeof r === 'object') add((r as Record<string, unknown>).subnet)
      }
    }
    if (Array.isArray(i.addresses)) {
      for (const a of i.addresses) if (a && typeof a === 'object') add((a as Record<string, unknown>).address)
    }
  }
  return out
}

/** Host subnets that a new network must not overlap: interface networks and on-link routes. */
export function hostUsedSubnets(): Cidr[] {
  return [...hostInterfaceSubnets(), ...hostOnLinkRouteSubnets()]
}
