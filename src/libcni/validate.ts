import {CNI_ERR, type NetConfList, type PortMapping, type Protocol} from '../plugins/types.js'
import {showToken, tokenFault, valueFault} from '../kernel/tokens.js'
import {
  dnsName,
  given,
  ipAddress,
  ipOrCidr,
  list,
  mac,
  networkName,
  nonNegativeInt,
  notA,
  obj,
  port,
  portText,
  protocol,
  range,
  refuse,
  dns,
} from '../plugins/fields.js'

/**
 * Where a request's own untrusted input becomes typed values: capability
 * args, CNI_ARGS, CLI flags and container labels are parsed here before any
 * kernel work, or refused with one line that names the field (the scalars
 * are plugins/fields.ts; the fields of a conflist entry are the embedded
 * plugin's own `parse`, run once per request by libcni/chain.ts).
 */

// ---- capability args ------------------------------------------------------

/**
 * Capability args as a runtime passes them (runtimeConfig). The well-known
 * ones are parsed and returned in canonical form; any other capability is
 * passed on unchanged (only an exec'd plugin that declares it receives it).
 */
export function capabilityArgs(raw: unknown): Record<string, unknown> | undefined {
  if (raw === undefined) return undefined
  const c = obj(raw, 'capabilityArgs')
  const out: Record<string, unknown> = {...c}
  if (given(c.portMappings)) {
    out.portMappings = list(c.portMappings, 'portMappings').map((p, i): PortMapping => {
      const f = `portMappings[${i}]`
      const m = obj(p, f)
      const pm: PortMapping = {
        hostPort: port(m.hostPort, `${f}.hostPort`),
        containerPort: port(m.containerPort, `${f}.containerPort`),
        protocol: protocol(m.protocol ?? 'tcp', `${f}.protocol`),
      }
      if (given(m.hostIP) && m.hostIP !== '') pm.hostIP = ipAddress(m.hostIP, `${f}.hostIP`)
      return pm
    })
  }
  if (given(c.ips)) out.ips = list(c.ips, 'ips').map((v, i) => ipOrCidr(v, `ips[${i}]`))
  if (given(c.mac)) out.mac = mac(c.mac, 'mac')
  if (given(c.bandwidth)) {
    const b = obj(c.bandwidth, 'bandwidth')
    const bw: Record<string, number> = {}
    for (const [k, v] of Object.entries(b)) {
      if (!['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'].includes(k)) refuse(`bandwidth.${k}`, 'is not a bandwidth field (ingressRate, ingressBurst, egressRate, egressBurst)')
      bw[k] = nonNegativeInt(v, `bandwidth.${k}`)
    }
    out.bandwidth = bw
  }
  if (given(c.dns)) out.dns = dns(c.dns, 'dns')
  if (given(c.aliases)) {
    const a = obj(c.aliases, 'aliases')
    const al: Record<string, string[]> = {}
    for (const [net, names] of Object.entries(a)) {
      networkName(net, `aliases.${net}`)
      al[net] = list(names, `aliases.${net}`).map((n, i) => dnsName(n, `aliases.${net}[${i}]`))
    }
    out.aliases = al
  }
  if (given(c.ipRanges)) {
    out.ipRanges = list(c.ipRanges, 'ipRanges').map((set, i) => list(set, `ipRanges[${i}]`).map((r, j) => range(r, `ipRanges[${i}][${j}]`)))
  }
  return out
}

// ---- CNI_ARGS -------------------------------------------------------------

const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/

/** CNI_ARGS pairs: known keys typed, any other value one plain token. */
export function cniArgs(pairs: Array<[string, string]> | undefined): void {
  for (const [k, v] of pairs ?? []) {
    const field = `CNI_ARGS.${/^[A-Za-z0-9_]{1,64}$/.test(k) ? k : 'key'}`
    const env = CNI_ERR.INVALID_ENV
    if (!/^[A-Za-z0-9_]{1,64}$/.test(k)) refuse(field, notA('a key of letters, digits and _', k), env)
    switch (k) {
      case 'IgnoreUnknown':
        if (!/^(1|0|true|false)$/i.test(v)) refuse(field, notA('1, 0, true or false', v), env)
        break
      case 'IP':
      case 'GATEWAY':
        v.split(',').forEach((s) => ipOrCidr(s, field))
        break
      case 'MAC':
        mac(v, field)
        break
      case 'K8S_POD_NAME':
      case 'K8S_POD_NAMESPACE':
        if (!K8S_NAME.test(v)) refuse(field, notA('a Kubernetes object name', v), env)
        break
      case 'K8S_POD_INFRA_CONTAINER_ID':
      case 'K8S_POD_UID': {
        const f = valueFault(v, /^[A-Za-z0-9_.-]+$/, 128)
        if (f) refuse(field, `${showToken(v)} is not an id: it ${f}`, env)
        break
      }
      default: {
        const f = v === '' ? undefined : tokenFault(v, /^[A-Za-z0-9_.,:/@+=-]+$/)
        if (f) refuse(field, `${showToken(v)} ${f}`, env)
      }
    }
  }
}

/**
 * The request's own values, before the first plugin runs: the network,
 * CNI_ARGS and the capability args (the conflist entry of each embedded
 * plugin is that plugin's `parse`, libcni/chain.ts; CNI_IFNAME is checked
 * once, by the runtime, args.ts validateIfName). A typed runtime conf
 * (libcni/conf.ts) holds values our own edge parsed: they are not parsed
 * again. Returns the capability args in canonical form.
 */
export function request(
  conf: Pick<NetConfList, 'name'>,
  rt: {args?: Array<[string, string]>; capabilityArgs?: Record<string, unknown>},
  typed = false,
): Record<string, unknown> | undefined {
  networkName(conf.name)
  if (typed) return rt.capabilityArgs
  cniArgs(rt.args)
  return capabilityArgs(rt.capabilityArgs)
}

// ---- CLI flags and container labels --------------------------------------

/**
 * `[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]` (HOSTIP may be IPv6 in brackets),
 * from a CLI flag or a container label (netconf/labels.ts); `field` names
 * where it came from.
 */
export function portSpec(spec: string, field: string): PortMapping {
  if (typeof spec !== 'string' || tokenFault(spec, /^[0-9A-Za-z.:[\]/]+$/, 128)) {
    return refuse(field, `${showToken(spec)} is not [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]${spec && typeof spec === 'string' && tokenFault(spec, /.*/, 128) ? `: it ${tokenFault(spec, /.*/, 128)}` : ''}`)
  }
  let rest = spec
  let proto: Protocol = 'tcp'
  const slash = rest.lastIndexOf('/')
  if (slash >= 0) {
    proto = protocol(rest.slice(slash + 1), field)
    rest = rest.slice(0, slash)
  }
  let hostIP: string | undefined
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest)
  if (v6) {
    if (!v6[1]!.includes(':')) refuse(field, `${showToken(v6[1])} in brackets is not an IPv6 address`)
    hostIP = ipAddress(v6[1], field)
    rest = v6[2]!
  }
  const fields = rest.split(':')
  if (!v6 && fields.length === 3) {
    const h = fields.shift()!
    if (h !== '') {
      if (h.includes(':') || !/^\d/.test(h)) refuse(field, `${showToken(h)} is not an IPv4 address (bracket IPv6 addresses)`)
      hostIP = ipAddress(h, field)
    }
  }
  if (fields.length !== 2) return refuse(field, `${showToken(spec)} is not [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`)
  const pm: PortMapping = {hostPort: portText(fields[0]!, field), containerPort: portText(fields[1]!, field), protocol: proto}
  if (hostIP) pm.hostIP = hostIP
  return pm
}
