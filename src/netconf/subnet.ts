import {readFileSync} from 'node:fs'
import {networkInterfaces} from 'node:os'
import {Address4, Address6} from 'ip-address'
import type {NetConfList} from '../plugins/types.js'

/**
 * Subnet math for `network create`, as nerdctl does it (pkg/netutil/subnet):
 * automatic allocation from 10.4.1.0/24, overlap checks, host-bits check.
 * All address arithmetic goes through ip-address (BigInt), never by hand.
 */

export const DEFAULT_CIDR = '10.4.0.0/24'
export const STARTING_CIDR = '10.4.1.0/24'

export type Family = 4 | 6

/** A parsed CIDR: the network it denotes plus what the user wrote. */
export interface Cidr {
  family: Family
  /** The canonical network form, e.g. 10.244.0.0/16 or 2001:db8::/64 */
  network: string
  prefix: number
  /** First address (network address) as a BigInt */
  start: bigint
  /** Last address (broadcast) as a BigInt */
  end: bigint
  /** The address part exactly as parsed, canonicalised (e.g. 10.244.0.1) */
  address: string
}

type Addr = Address4 | Address6

function parseAddr(text: string): Addr | undefined {
  if (text.includes('%')) return undefined
  try {
    if (text.includes(':')) return new Address6(text)
    return new Address4(text)
  } catch {
    return undefined
  }
}

function familyOf(a: Addr): Family {
  return a instanceof Address4 ? 4 : 6
}

/** Parses `ADDR/PREFIX` strictly (a prefix is required, as Go's net.ParseCIDR). Undefined when invalid. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/')
  if (slash <= 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) return undefined
  const a = parseAddr(text)
  if (!a) return undefined
  const prefix = a.subnetMask
  const max = a instanceof Address4 ? 32 : 128
  if (prefix < 0 || prefix > max) return undefined
  const start = a.startAddress()
  return {
    family: familyOf(a),
    network: `${start.correctForm()}/${prefix}`,
    prefix,
    start: start.bigInt(),
    end: a.endAddress().bigInt(),
    address: a.correctForm(),
  }
}

/** Parses a plain IP address (no prefix). Undefined when invalid. */
export function parseIp(text: string): {family: Family; value: bigint; text: string} | undefined {
  if (text.includes('/')) return undefined
  const a = parseAddr(text)
  if (!a) return undefined
  return {family: familyOf(a), value: a.bigInt(), text: a.correctForm()}
}

export function formatIp(family: Family, value: bigint): string {
  return family === 4 ? Address4.fromBigInt(value).correctForm() : Address6.fromBigInt(value).correctForm()
}

/** True when the CIDR was written with host bits set (10.244.0.1/16). */
export function hasHostBits(c: Cidr): boolean {
  return c.network !== `${c.address}/${c.prefix}`
}

export function contains(net: Cidr, ip: {family: Family; value: bigint}): boolean {
  return net.family === ip.family && ip.value >= net.start && ip.value <= net.end
}

/** nerdctl's IntersectsWithNetworks: either network contains the other's first address. */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.start <= b.end && b.start <= a.end
}

export function overlapsAny(c: Cidr, used: Cidr[]): Cidr | undefined {
  return used.find((u) => overlaps(c, u))
}

/** Gateway default: the network address + 1 (nerdctl's FirstIPInSubnet; the address itself for /32, /128). */
export function firstIp(c: Cidr): string {
  const maxPrefix = c.family === 4 ? 32 : 128
  return formatIp(c.family, c.prefix === maxPrefix ? c.start : c.start + 1n)
}

/** The last address of the network (nerdctl's LastIPInSubnet). */
export function lastIp(c: Cidr): string {
  return formatIp(c.family, c.end)
}

/**
 * nerdctl's GetFreeSubnet: start at `start` and step to the next network of the
 * same size (third octet +1 with carry for a /24) until it overlaps nothing used.
 */
export function getFreeSubnet(start: Cidr, used: Cidr[]): Cidr | undefined {
  const size = start.end - start.start + 1n
  const limit = start.family === 4 ? 1n << 32n : 1n << 128n
  let s = start.start
  while (s + size <= limit) {
    const cand = parseCidr(`${formatIp(start.family, s)}/${start.prefix}`)!
    const clash = overlapsAny(cand, used)
    if (!clash) return cand
    // Every candidate up to the end of the clashing network overlaps it too:
    // jump to the first candidate after it (same result as stepping, fewer steps).
    const after = ((clash.end + 1n + size - 1n) / size) * size
    s = after > s + size ? after : s + size
  }
  return undefined
}

/** Networks of every address on every host interface (as Go's net.InterfaceAddrs). */
export function hostInterfaceSubnets(): Cidr[] {
  const out: Cidr[] = []
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      const c = a.cidr ? parseCidr(a.cidr.replace(/%.*\//, '/')) : undefined
      if (c) out.push(c)
    }
  }
  return out
}

/** Little-endian hex (as /proc/net/route prints) to a big-endian hex string. */
function leHexToBe(hex: string): string {
  return (hex.match(/../g) ?? []).reverse().join('')
}

/**
 * The host's on-link routes (no gateway, not default), read from /proc without
 * spawning anything: IPv4 from /proc/net/route, IPv6 from /proc/net/ipv6_route
 * (skipping lo, multicast and default routes).
 */
export function hostOnLinkRouteSubnets(): Cidr[] {
  const out: Cidr[] = []
  try {
    const lines = readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)
    for (const line of lines) {
      const f = line.trim().split(/\s+/)
      if (f.length < 8) continue
      const [iface, dst, gw, flags, , , , mask] = f
      if (iface === 'lo' || Number.parseInt(gw!, 16) !== 0 || (Number.parseInt(flags!, 16) & 0x2) !== 0) continue
      const net = Address4.fromAddressAndMask(
        Address4.fromHex(leHexToBe(dst!)).correctForm(),
        Address4.fromHex(leHexToBe(mask!)).correctForm(),
      )
      if (net.subnetMask === 0) continue
      const c = parseCidr(`${net.startAddress().correctForm()}/${net.subnetMask}`)
      if (c) out.push(c)
    }
  } catch {
    // no /proc/net/route (no IPv4): nothing to add
  }
  try {
    const lines = readFileSync('/proc/net/ipv6_route', 'utf8').split('\n')
    for (const line of lines) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      const [dst, plen, , , nextHop, , , , flags, iface] = f
      const prefix = Number.parseInt(plen!, 16)
      if (iface === 'lo' || prefix === 0 || /[^0]/.test(nextHop!) || (Number.parseInt(flags!, 16) & 0x2) !== 0) continue
      const addr = Address6.fromBigInt(BigInt('0x' + dst!))
      if (addr.isMulticast()) continue
      const c = parseCidr(`${addr.correctForm()}/${prefix}`)
      if (c) out.push(c)
    }
  } catch {
    // no IPv6
  }
  return out
}

/**
 * Every subnet a network config claims, whatever its plugin types: host-local
 * `ranges` and `subnet`, static `addresses`, in any plugin's ipam (bridge,
 * macvlan, ipvlan, foreign conflists).
 */
export function confSubnets(conf: NetConfList): Cidr[] {
  const out: Cidr[] = []
  const add = (v: unknown) => {
    if (typeof v !== 'string') return
    const c = parseCidr(v)
    if (c) out.push(parseCidr(c.network)!)
  }
  for (const p of Array.isArray(conf.plugins) ? conf.plugins : []) {
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
