import {CniError, CNI_ERR, type CniDns, type CniIpConfig, type CniResult, type CniRoute, type EmbeddedPlugin, type PluginRequest} from '../types.js'
import {cidrContains, parseCidr, parseIp} from '../../kernel/ip/addr.js'
import {loadArgs} from '../cniargs.js'

/** static IPAM v1.1.1 (no state; DEL is a no-op). */

interface StaticAddr {
  address: string // CIDR with the host address
  gateway?: string
}

function bad(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg) // the reference returns plain errors: skel makes them 999
}

function cidr(s: unknown, what: string): string {
  try {
    const c = parseCidr(String(s).trim())
    return `${c.ip}/${c.prefix}`
  } catch {
    throw bad(`${what}, got: '${String(s)}'`)
  }
}

export function loadStaticConf(req: PluginRequest): {addresses: StaticAddr[]; routes: CniRoute[]; dns: CniDns} {
  const ipam = req.config.ipam as Record<string, unknown> | undefined
  if (!ipam) throw bad("IPAM config missing 'ipam' key")
  let addresses: StaticAddr[] = (Array.isArray(ipam.addresses) ? ipam.addresses : []).map((a: {address?: unknown; gateway?: unknown}) => ({
    address: cidr(a.address, "the 'address' field is expected to be in CIDR notation"),
    ...(a.gateway ? {gateway: parseIp(String(a.gateway)).ip} : {}),
  }))
  const env = loadArgs(req.args, ['IP', 'GATEWAY'])
  if (env.IP) {
    for (const item of env.IP.split(',')) addresses.push({address: cidr(item, "the 'ip' field is expected to be in CIDR notation")})
  }
  if (env.GATEWAY) {
    for (const item of env.GATEWAY.split(',')) {
      let gw: string
      try {
        gw = parseIp(item.trim()).ip
      } catch {
        throw bad(`invalid gateway address: ${item}`)
      }
      for (const a of addresses) {
        const c = parseCidr(a.address)
        if (cidrContains(c, gw)) a.gateway = gw
      }
    }
  }
  const argIps = (req.config.args as {cni?: {ips?: unknown}} | undefined)?.cni?.ips
  if (Array.isArray(argIps) && argIps.length) {
    addresses = argIps.map((s) => ({address: cidr(s, "an entry in the 'ips' field is NOT in CIDR notation")}))
  }
  const rcIps = (req.config.runtimeConfig as {ips?: unknown} | undefined)?.ips
  if (Array.isArray(rcIps) && rcIps.length) {
    addresses = rcIps.map((s) => ({address: cidr(s, "an entry in the 'ips' field is NOT in CIDR notation")}))
  }
  const routes = (Array.isArray(ipam.routes) ? ipam.routes : []).map((r: {dst?: unknown; gw?: unknown}) => {
    const d = parseCidr(String(r.dst))
    const out: CniRoute = {dst: `${d.ip}/${d.prefix}`}
    if (r.gw) out.gw = parseIp(String(r.gw)).ip
    return out
  })
  return {addresses, routes, dns: (ipam.dns as CniDns | undefined) ?? {}}
}

const plugin: EmbeddedPlugin = {
  precheck(req: PluginRequest): void {
    loadStaticConf(req)
  },
  async add(req: PluginRequest): Promise<CniResult> {
    const c = loadStaticConf(req)
    const ips: CniIpConfig[] = c.addresses.map((a) => ({address: a.address, ...(a.gateway ? {gateway: a.gateway} : {})}))
    return {cniVersion: '1.0.0', ips, routes: c.routes, dns: c.dns}
  },
  async del(): Promise<void> {},
  async check(req: PluginRequest): Promise<void> {
    const c = loadStaticConf(req)
    const prev = req.config.prevResult
    if (!prev) throw new CniError(CNI_ERR.INTERNAL, 'Required prevResult missing')
    for (const a of c.addresses) {
      const ip = parseCidr(a.address).ip
      for (const p of prev.ips ?? []) {
        if (parseCidr(p.address).ip !== ip) continue
        if (a.gateway === undefined || (p.gateway !== undefined && parseIp(p.gateway).ip === a.gateway)) break
        throw new CniError(CNI_ERR.INTERNAL, `static: Failed to match addr ${ip} on interface ${req.ifName}`)
      }
    }
  },
}
export default plugin
