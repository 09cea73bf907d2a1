import {Address4, Address6} from 'ip-address'
import {CNI_ERR, CniError, NETWORK_NAME_RULE, type NetConfList, type PluginConf, type PortMapping, type Protocol} from '../plugins/types.js'
import {assertSysctlValue} from '../kernel/ip/batch.js'
import {chainFault} from '../kernel/netfilter/iptables.js'
import {sysctlKeyFromDotted} from '../kernel/sysctl.js'
import {ifNameProblem, showToken, tokenFault, valueFault} from '../kernel/tokens.js'

/**
 * The one place where untrusted input becomes typed values. Every value a
 * request carries (capability args, CNI_ARGS, the fields of the conflist the
 * embedded plugins read, CLI flags, container labels) is parsed here before
 * any kernel work, or refused with one line that names the field:
 *
 *   invalid portMappings[0].protocol : must be tcp, udp or sctp, not "tcp\n--flush"
 *
 * The batch writers in kernel/ check every token again (defence in depth);
 * this module is where a refusal names the field a user can fix.
 */

export class InvalidField extends CniError {
  constructor(
    public readonly field: string,
    why: string,
    code: number = CNI_ERR.INVALID_NETCONF,
  ) {
    super(code, `invalid ${field}`, why)
    this.name = 'InvalidField'
  }
}

const refuse = (field: string, why: string, code?: number): never => {
  throw new InvalidField(field, why, code)
}

/** "must be X, not <value>" with the value shown one-line and cut. */
const notA = (what: string, v: unknown): string => `must be ${what}, not ${v === undefined ? 'missing' : showToken(typeof v === 'object' ? JSON.stringify(v) : v)}`

// ---- scalar types -------------------------------------------------------

export type {Protocol}

export function protocol(v: unknown, field: string): Protocol {
  const p = typeof v === 'string' ? v.toLowerCase() : v
  if (p !== 'tcp' && p !== 'udp' && p !== 'sctp') return refuse(field, notA('tcp, udp or sctp', v))
  return p
}

/** A port: an integer 1..65535 (a JSON number; text is not a port). */
export function port(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) return refuse(field, notA('an integer from 1 to 65535', v))
  return v
}

/** A port given as decimal text (CLI flags, labels). */
export function portText(v: string, field: string): number {
  if (!/^[1-9][0-9]{0,4}$/.test(v) || Number(v) > 65535) return refuse(field, notA('a port number from 1 to 65535', v))
  return Number(v)
}

/** An ordered port range "a-b" or one port, as text. */
export function portRangeText(v: string, field: string): [number, number] {
  const m = /^([0-9]+)(?:-([0-9]+))?$/.exec(v)
  if (!m) return refuse(field, notA('a port or an ordered range a-b', v))
  const a = portText(m[1]!, field)
  const b = m[2] === undefined ? a : portText(m[2], field)
  if (b < a) return refuse(field, `range ${a}-${b} is not ordered`)
  return [a, b]
}

/** An address without prefix, in canonical form (ip-address's correctForm). */
export function ipAddress(v: unknown, field: string): string {
  if (typeof v !== 'string' || tokenFault(v, /^[0-9A-Fa-f.:]+$/, 45)) return refuse(field, notA('an IPv4 or IPv6 address', v))
  if (Address4.isValid(v) && /^\d{1,3}(\.\d{1,3}){3}$/.test(v)) return new Address4(v).correctForm()
  if (v.includes(':') && Address6.isValid(v)) return new Address6(v).correctForm()
  return refuse(field, notA('an IPv4 or IPv6 address', v))
}

/** addr/prefix in canonical form; the address part is kept (not masked). */
export function cidr(v: unknown, field: string): string {
  if (typeof v !== 'string') return refuse(field, notA('an address/prefix', v))
  const i = v.indexOf('/')
  if (i < 0 || !/^\d{1,3}$/.test(v.slice(i + 1))) return refuse(field, notA('an address/prefix', v))
  let ip: string
  try {
    ip = ipAddress(v.slice(0, i), field)
  } catch {
    return refuse(field, notA('an address/prefix', v))
  }
  const prefix = Number(v.slice(i + 1))
  if (prefix > (ip.includes(':') ? 128 : 32)) return refuse(field, notA('an address/prefix', v))
  return `${ip}/${prefix}`
}

/** An address with or without a prefix (CNI `ips`, CNI_ARGS IP). */
export function ipOrCidr(v: unknown, field: string): string {
  return typeof v === 'string' && v.includes('/') ? cidr(v, field) : ipAddress(v, field)
}

const MAC_RE = /^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$/

/** A MAC: 6 octets, written back lower-case with ':'. */
export function mac(v: unknown, field: string): string {
  if (typeof v !== 'string' || !MAC_RE.test(v)) return refuse(field, notA('a MAC address of 6 octets (aa:bb:cc:dd:ee:ff)', v))
  return v.toLowerCase().replace(/-/g, ':')
}

/** A non-negative integer (rates, bursts). */
export function nonNegativeInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return refuse(field, notA('a non-negative integer', v))
  return v
}

export function intIn(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return refuse(field, notA(`an integer from ${min} to ${max}`, v))
  return v
}

export function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') return refuse(field, notA('true or false', v))
  return v
}

/** Interface names: the one rule set (kernel/tokens.ts) of every writer. */
export function ifName(v: unknown, field: string, code?: number): string {
  const why = ifNameProblem(v)
  if (why) return refuse(field, why, code)
  return v as string
}

/** iptables chain names: the iptables writer's own rule (kernel/iptables.ts chainFault). */
export function chainName(v: unknown, field: string): string {
  const f = chainFault(v)
  if (f) return refuse(field, `${showToken(v)} is not an iptables chain name: it ${f}`)
  return v as string
}

/** One iptables argument of a conflist's raw condition list (portmap conditionsV4/V6). */
export function iptablesArg(v: unknown, field: string): string {
  const f = tokenFault(v, /^[A-Za-z0-9_.,:/!+=@%-]+$/)
  if (f) return refuse(field, `${showToken(v)} is not one iptables argument: it ${f}`)
  return v as string
}

/** An absolute path without '..', of plain characters (data dirs). */
export function absPath(v: unknown, field: string): string {
  const f = tokenFault(v, /^\/[A-Za-z0-9_.+@/-]*$/, 1024)
  if (f || (v as string).split('/').includes('..')) return refuse(field, notA('an absolute path without ".."', v))
  return v as string
}

/** A DNS name (search domains, aliases): LDH labels and '_', at most 253 characters. */
export function dnsName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length > 253 || !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(v)) {
    return refuse(field, notA('a DNS name', v))
  }
  return v
}

/** A dotted sysctl key under net. (tuning): no '..', strict characters; IFNAME is the placeholder. */
export function sysctlKey(v: unknown, field: string): string {
  try {
    sysctlKeyFromDotted(v as string)
  } catch (e) {
    return refuse(field, (e as Error).message.replace(/^sysctl: /, ''))
  }
  return v as string
}

export function sysctlValue(key: string, v: unknown, field: string): string {
  if (typeof v !== 'string') return refuse(field, notA('a string', v))
  try {
    assertSysctlValue(key.replace(/\./g, '/'), v)
  } catch (e) {
    return refuse(field, (e as Error).message.replace(/^sysctl: /, ''))
  }
  return v
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return refuse(field, notA('an object', v))
  return v as Record<string, unknown>
}

function list(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) return refuse(field, notA('a list', v))
  return v
}

const given = (v: unknown) => v !== undefined && v !== null

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

function dns(v: unknown, field: string): Record<string, unknown> {
  const d = obj(v, field)
  const out: Record<string, unknown> = {}
  if (given(d.nameservers)) out.nameservers = list(d.nameservers, `${field}.nameservers`).map((s, i) => ipAddress(s, `${field}.nameservers[${i}]`))
  if (given(d.search)) out.search = list(d.search, `${field}.search`).map((s, i) => dnsName(s, `${field}.search[${i}]`))
  if (given(d.domain) && d.domain !== '') out.domain = dnsName(d.domain, `${field}.domain`)
  if (given(d.options)) {
    out.options = list(d.options, `${field}.options`).map((s, i) => {
      const f = tokenFault(s, /^[A-Za-z0-9_.:-]+$/, 64)
      return f ? refuse(`${field}.options[${i}]`, `${showToken(s)} is not a resolver option: it ${f}`) : s
    })
  }
  return out
}

function range(v: unknown, field: string): Record<string, string> {
  const r = obj(v, field)
  const out: Record<string, string> = {subnet: cidr(r.subnet, `${field}.subnet`)}
  for (const k of ['rangeStart', 'rangeEnd', 'gateway'] as const) {
    if (given(r[k]) && r[k] !== '') out[k] = ipOrCidr(r[k], `${field}.${k}`).split('/')[0]!
  }
  return out
}

function routes(v: unknown, field: string): void {
  list(v, field).forEach((r, i) => {
    const o = obj(r, `${field}[${i}]`)
    cidr(o.dst, `${field}[${i}].dst`)
    if (given(o.gw) && o.gw !== '') ipAddress(o.gw, `${field}[${i}].gw`)
  })
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

// ---- conflist fields of the embedded plugins ------------------------------

export function networkName(v: unknown, field = 'name'): string {
  const f = valueFault(v, new RegExp(NETWORK_NAME_RULE), 128)
  if (f) return refuse(field, `${showToken(v)} is not a network name: it ${f}`)
  return v as string
}

/**
 * Checks the fields an embedded plugin reads from its conflist entry (the
 * ones that reach the kernel), by plugin type. `at` is the entry's path,
 * `plugins[<i>]`. Other types are exec'd and check their own config.
 */
export function embeddedPluginConf(type: string, p: PluginConf, at: string): void {
  const c = p as Record<string, unknown>
  const opt = <T>(k: string, parse: (v: unknown, f: string) => T) => (given(c[k]) ? parse(c[k], `${at}.${k}`) : undefined)
  const cniArgsOf = () => (given(c.args) ? obj(obj(c.args, `${at}.args`).cni ?? {}, `${at}.args.cni`) : {})
  switch (type) {
    case 'bridge': {
      if (given(c.bridge) && c.bridge !== '') ifName(c.bridge, `${at}.bridge`)
      opt('mtu', (v, f) => intIn(v, f, 0, 65535))
      opt('vlan', (v, f) => intIn(v, f, 0, 4094))
      for (const k of ['isGateway', 'isDefaultGateway', 'forceAddress', 'ipMasq', 'hairpinMode', 'promiscMode', 'macspoofchk', 'enabledad', 'disableContainerInterface']) opt(k, bool)
      if (given(c.vlanTrunk)) list(c.vlanTrunk, `${at}.vlanTrunk`)
      const a = cniArgsOf()
      if (given(a.mac)) mac(a.mac, `${at}.args.cni.mac`)
      break
    }
    case 'portmap':
      opt('snat', bool)
      opt('markMasqBit', (v, f) => intIn(v, f, 0, 31))
      opt('externalSetMarkChain', chainName)
      for (const k of ['conditionsV4', 'conditionsV6']) {
        if (given(c[k])) list(c[k], `${at}.${k}`).forEach((s, i) => iptablesArg(s, `${at}.${k}[${i}]`))
      }
      break
    case 'firewall':
      if (given(c.backend) && c.backend !== '' && c.backend !== 'iptables' && c.backend !== 'firewalld') refuse(`${at}.backend`, notA('iptables or firewalld', c.backend))
      if (given(c.ingressPolicy) && c.ingressPolicy !== '' && c.ingressPolicy !== 'open' && c.ingressPolicy !== 'same-bridge' && c.ingressPolicy !== 'isolated') {
        refuse(`${at}.ingressPolicy`, notA('open, same-bridge or isolated', c.ingressPolicy))
      }
      if (given(c.iptablesAdminChainName) && c.iptablesAdminChainName !== '') chainName(c.iptablesAdminChainName, `${at}.iptablesAdminChainName`)
      break
    case 'tuning': {
      const sysctls = (v: unknown, f: string) => {
        for (const [k, val] of Object.entries(obj(v, f))) {
          const key = sysctlKey(k.replace('IFNAME', 'eth0'), `${f}.${k}`)
          sysctlValue(key, val, `${f}.${k}`)
        }
      }
      opt('sysctl', sysctls)
      if (given(c.mac) && c.mac !== '') mac(c.mac, `${at}.mac`)
      opt('mtu', (v, f) => intIn(v, f, 0, 65535))
      opt('txQLen', (v, f) => intIn(v, f, 0, 2 ** 31 - 1))
      opt('promisc', bool)
      opt('allmulti', bool)
      if (given(c.dataDir) && c.dataDir !== '') absPath(c.dataDir, `${at}.dataDir`)
      const a = cniArgsOf()
      if (given(a.sysctl)) sysctls(a.sysctl, `${at}.args.cni.sysctl`)
      if (given(a.mac)) mac(a.mac, `${at}.args.cni.mac`)
      if (given(a.mtu)) intIn(a.mtu, `${at}.args.cni.mtu`, 0, 65535)
      break
    }
    default:
      break
  }
  const ipam = c.ipam as Record<string, unknown> | undefined
  if ((type === 'bridge' || type === 'host-local' || type === 'static') && given(ipam)) {
    const f = `${at}.ipam`
    const i = obj(ipam, f)
    if (i.type === 'host-local') {
      if (given(i.subnet) && i.subnet !== '') cidr(i.subnet, `${f}.subnet`)
      for (const k of ['rangeStart', 'rangeEnd', 'gateway']) if (given(i[k]) && i[k] !== '') ipOrCidr(i[k], `${f}.${k}`)
      if (given(i.ranges)) list(i.ranges, `${f}.ranges`).forEach((set, a) => list(set, `${f}.ranges[${a}]`).forEach((r, b) => range(r, `${f}.ranges[${a}][${b}]`)))
      if (given(i.dataDir) && i.dataDir !== '') absPath(i.dataDir, `${f}.dataDir`)
      if (given(i.resolvConf) && i.resolvConf !== '') absPath(i.resolvConf, `${f}.resolvConf`)
    } else if (i.type === 'static') {
      if (given(i.addresses)) {
        list(i.addresses, `${f}.addresses`).forEach((a, n) => {
          const o = obj(a, `${f}.addresses[${n}]`)
          cidr(o.address, `${f}.addresses[${n}].address`)
          if (given(o.gateway) && o.gateway !== '') ipAddress(o.gateway, `${f}.addresses[${n}].gateway`)
        })
      }
      if (given(i.dns)) dns(i.dns, `${f}.dns`)
    }
    if ((i.type === 'host-local' || i.type === 'static') && given(i.routes)) routes(i.routes, `${f}.routes`)
  }
}

/**
 * The whole request, before the first plugin runs: the network, CNI_ARGS, the capability args, and the conflist entry
 * of every embedded plugin of the chain (`isEmbedded` says which types run
 * in-process). Returns the capability args in canonical form.
 */
export function request(
  conf: NetConfList,
  rt: {containerId: string; ifName: string; args?: Array<[string, string]>; capabilityArgs?: Record<string, unknown>},
  isEmbedded: (type: string) => boolean,
  typed = false,
): Record<string, unknown> | undefined {
  networkName(conf.name)
  // CNI_IFNAME: checked once, by the runtime (args.ts validateIfName); a typed runtime conf
  // (libcni/conf.ts) holds values our own edge parsed: not parsed again
  if (!typed) cniArgs(rt.args)
  const caps = typed ? rt.capabilityArgs : capabilityArgs(rt.capabilityArgs)
  conf.plugins.forEach((p, i) => {
    // other types are looked up in CNI_PATH, which refuses a type that is not a plain file name
    if (typeof p?.type === 'string' && isEmbedded(p.type)) embeddedPluginConf(p.type, p, `plugins[${i}]`)
  })
  return caps
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
