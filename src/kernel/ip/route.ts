import {parseCidr, parseIp, formatCidr, networkOf} from './addr.js'
import type {IpCmd} from './batch.js'
import {assertIfName} from './link.js'

/** Routes: ip batch builders and parsing of `ip -j route show`. */

export interface RouteSpec {
  dst: string
  gw?: string
  dev: string
}

/**
 * `ip route prepend` sends NLM_F_CREATE without EXCL/APPEND, exactly what
 * netlink.RouteAddEcmp (used by the reference ConfigureIface) sends.
 */
export function cmdRouteAdd(r: RouteSpec): IpCmd {
  const dst = networkOf(parseCidr(r.dst))
  const cmd = ['route', 'prepend', formatCidr(dst)]
  if (r.gw) cmd.push('via', parseIp(r.gw).ip)
  cmd.push('dev', assertIfName(r.dev))
  return cmd
}

/**
 * All routes of all families (`table all` is the only way to get IPv6 routes
 * from a batch line, which cannot carry -6). Filter with mainRoutes().
 */
export function cmdRouteShowAll(): IpCmd {
  return ['route', 'show', 'table', 'all']
}

export function routeIsV6(r: IpRoute): boolean {
  if (r.dst !== 'default') return r.dst.includes(':')
  if (r.gateway) return r.gateway.includes(':')
  return 'pref' in r
}

/** Routes of the main table of one family. */
export function mainRoutes(all: IpRoute[], v6: boolean): IpRoute[] {
  return all.filter((r) => (r.table === undefined || r.table === 'main') && (r.type === undefined || r.type === 'unicast') && routeIsV6(r) === v6)
}

/** One entry of `ip -j route show`. */
export interface IpRoute {
  dst: string
  gateway?: string
  dev?: string
  protocol?: string
  scope?: string
  prefsrc?: string
  flags?: string[]
  [k: string]: unknown
}

/** Normalized destination of a route entry ('default' -> 0.0.0.0/0 or ::/0). */
export function routeDst(r: IpRoute, v6: boolean): string {
  if (r.dst === 'default') return v6 ? '::/0' : '0.0.0.0/0'
  return r.dst.includes('/') ? formatCidr(networkOf(parseCidr(r.dst))) : `${parseIp(r.dst).ip}/${v6 ? 128 : 32}`
}
