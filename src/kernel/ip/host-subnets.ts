import {readFileSync} from 'node:fs'
import {networkInterfaces} from 'node:os'
import {Address4, Address6} from 'ip-address'
import {type Cidr, networkOf, parseCidr} from './addr.js'

/**
 * The host's subnets, read without spawning anything (node's interface list
 * and /proc/net): what a new network must not overlap. Each is the network of
 * an address or route; ::ffff:a.b.c.d stays IPv6 (keepMapped), zones are dropped.
 */

function networkOrUndefined(text: string): Cidr | undefined {
  try {
    return networkOf(parseCidr(text, {keepMapped: true}))
  } catch {
    return undefined
  }
}

/** Networks of every address on every host interface (as Go's net.InterfaceAddrs). */
export function hostInterfaceSubnets(): Cidr[] {
  const out: Cidr[] = []
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      const c = a.cidr ? networkOrUndefined(a.cidr.replace(/%.*\//, '/')) : undefined
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
      const c = networkOrUndefined(`${net.startAddress().correctForm()}/${net.subnetMask}`)
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
      const c = networkOrUndefined(`${addr.correctForm()}/${prefix}`)
      if (c) out.push(c)
    }
  } catch {
    // no IPv6
  }
  return out
}
