import {CniError, CNI_ERR, type CniDns, type CniIpConfig, type CniResult, type CniRoute, type EmbeddedPlugin, type ParseContext, type PluginNetConf, type PluginRequest} from '../types.js'
import {cidrContains, parseCidr, parseIp} from '../../kernel/ip/addr.js'
import {loadArgs} from '../cniargs.js'
import * as f from '../fields.js'

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

export interface StaticConf {
  addresses: StaticAddr[]
  routes: CniRoute[]
  dns: CniDns
}

export function loadStaticConf(config: PluginNetConf, args: Array<[string, string]>): StaticConf {
  const ipam = config.ipam as Record<string, unknown> | undefined
  if (!ipam) throw bad("IPAM config missing 'ipam' key")
  let addresses: StaticAddr[] = (Array.isArray(ipam.addresses) ? ipam.addresses : []).map((a: {address?: unknown; gateway?: unknown}) => ({
    address: cidr(a.address, "the 'address' field is expected to be in CIDR notation"),
    ...(a.gateway ? {gateway: parseIp(String(a.gateway)).ip} : {}),
  }))
  const env = loadArgs(args, ['IP', 'GATEWAY'])
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
  const argIps = (config.args as {cni?: {ips?: unknown}} | undefined)?.cni?.ips
  if (Array.isArray(argIps) && argIps.length) {
    addresses = argIps.map((s) => ({address: cidr(s, "an entry in the 'ips' field is NOT in CIDR notation")}))
  }
  const rcIps = (config.runtimeConfig as {ips?: unknown} | undefined)?.ips
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

/** The `ipam` fields static reads, refused by name (`plugins[0].ipam.addresses[0].address`). */
function checkFields(c: PluginNetConf, at: string): void {
  if (!f.given(c.ipam)) return
  const field = `${at}.ipam`
  const i = f.obj(c.ipam, field)
  if (f.given(i.addresses)) {
    f.list(i.addresses, `${field}.addresses`).forEach((a, n) => {
      const o = f.obj(a, `${field}.addresses[${n}]`)
      f.cidr(o.address, `${field}.addresses[${n}].address`)
      if (f.given(o.gateway) && o.gateway !== '') f.ipAddress(o.gateway, `${field}.addresses[${n}].gateway`)
    })
  }
  if (f.given(i.dns)) f.dns(i.dns, `${field}.dns`)
  if (f.given(i.routes)) f.routes(i.routes, `${field}.routes`)
}

const plugin: EmbeddedPlugin<StaticConf> = {
  parse(conf: PluginNetConf, at: string, ctx: ParseContext): StaticConf {
    checkFields(conf, at)
    // DEL is a no-op: it reads nothing more (and never fails on it)
    return ctx.command === 'DEL' ? {addresses: [], routes: [], dns: {}} : loadStaticConf(conf, ctx.args)
  },
  programs: () => [],
  async add(_req: PluginRequest, c: StaticConf): Promise<CniResult> {
    const ips: CniIpConfig[] = c.addresses.map((a) => ({address: a.address, ...(a.gateway ? {gateway: a.gateway} : {})}))
    return {cniVersion: '1.0.0', ips, routes: c.routes, dns: c.dns}
  },
  async del(): Promise<void> {},
  async check(req: PluginRequest, c: StaticConf): Promise<void> {
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
