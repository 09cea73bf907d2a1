/**
 * The iptables backend's token checks: the last line of defence (see
 * kernel/tokens.ts). Every table, chain name, rule token and option value
 * that reaches iptables-restore is checked here, and a bad one throws
 * UnsafeTokenError naming it: no caller can put a newline, a second option
 * or a quote into a rule.
 */
import {Address4, Address6} from 'ip-address'
import {canonicalIp} from '../../ip/addr.js'
import {UnsafeTokenError, portFault, showToken, tokenFault, valueFault} from '../../tokens.js'

/** Characters of a bare token in a rule (iptables-save never prints others unquoted for our rules). */
export const BARE = /^[A-Za-z0-9_.,:/+@%=[\]-]+$/
/** Chain and target names: iptables allows 28 characters (XT_EXTENSION_MAXNAMELEN - 1). */
const CHAIN_CHARS = /^[A-Za-z0-9_.:+@-]+$/
export const MAX_CHAIN = 28
export const TABLES = new Set(['filter', 'nat', 'mangle', 'raw', 'security'])
/** Protocols a rule may name (-p); numbers 0..255 too. */
export const PROTOCOLS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'ipv6-icmp', 'esp', 'ah', 'gre', 'all'])
/** Options that are iptables commands (or change the table): never part of a rule. */
export const COMMAND_OPTIONS = new Set([
  '-A', '--append', '-C', '--check', '-D', '--delete', '-I', '--insert', '-R', '--replace', '-L', '--list', '-S', '--list-rules',
  '-F', '--flush', '-Z', '--zero', '-N', '--new-chain', '-X', '--delete-chain', '-P', '--policy', '-E', '--rename-chain',
  '-t', '--table', '-w', '--wait', '-W', '--wait-interval', '-M', '--modprobe', '-h', '--help', '-V', '--version',
])
/** Options whose value is a port list or range, a state list, an address type list. */
const PORT_OPTIONS = new Set(['--dport', '--sport'])
const PORT_LIST_OPTIONS = new Set(['--dports', '--sports'])
/** Options that must be followed by a value. */
export const NEEDS_VALUE = new Set([...PORT_OPTIONS, ...PORT_LIST_OPTIONS, '--ctstate', '--state', '--dst-type', '--src-type'])

export function refuse(msg: string): never {
  throw new UnsafeTokenError(msg)
}

export function ruleFault(field: string, tok: unknown, why: string): never {
  refuse(`iptables: refused token ${showToken(tok)} for ${field} in rule : ${why}`)
}

/** Why a chain (or target) name cannot be used, or undefined. */
export function chainFault(name: unknown): string | undefined {
  const f = valueFault(name, CHAIN_CHARS, MAX_CHAIN)
  if (f) return f
  if ((name as string).startsWith('!')) return "starts with '!'"
  return undefined
}

/** Throws unless `name` is a usable chain name (at most 28 characters, no whitespace, not starting with '-' or '!'). */
export function assertChainName(name: unknown, what = 'chain'): string {
  const f = chainFault(name)
  if (f) refuse(`iptables: refused ${what} name ${showToken(name)} : ${f}`)
  return name as string
}

/** A port (1..65535) or a range a:b (either side may be empty, as iptables allows). */
function portSpecFault(v: string): string | undefined {
  const parts = v.split(':')
  if (parts.length === 1) return portFault(v)
  if (parts.length !== 2 || (parts[0] === '' && parts[1] === '')) return 'is not a port or port range'
  for (const p of parts) if (p !== '' && p !== '0' && portFault(p)) return 'is not a port range of numbers 0..65535'
  return undefined
}

/** A multiport list: 1..15 ports or ranges, comma-separated. */
function portListFault(v: string): string | undefined {
  const items = v.split(',')
  if (items.length > 15) return 'has more than 15 ports'
  for (const p of items) if (portSpecFault(p)) return `holds ${JSON.stringify(p)}, not a port or port range`
  return undefined
}

/** A -s/-d value: an IP address or CIDR (saveForm re-renders it canonically); refuses anything else. */
export function addressValue(field: string, v: unknown): string {
  const f = valueFault(v, /^[0-9A-Fa-f:./]+$/, 64)
  if (f) ruleFault(field, v, f)
  const s = v as string
  if (!Address4.isValid(s) && !Address6.isValid(s)) ruleFault(field, v, 'is not an IP address or CIDR')
  return s
}

/** ip:port or [ip6]:port (DNAT/SNAT), re-rendered canonically. */
export function natDestValue(field: string, v: unknown): string {
  const f = valueFault(v, /^[0-9A-Fa-f:.[\]]+$/, 64)
  if (f) ruleFault(field, v, f)
  const s = v as string
  const m6 = /^\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?$/.exec(s)
  const m4 = m6 ? null : /^([0-9.]+)(?::([0-9]+))?$/.exec(s)
  const m = m6 ?? m4
  if (!m) ruleFault(field, v, 'is not ip:port or [ip6]:port')
  const ok = m6 ? Address6.isValid(m[1]!) && !m[1]!.includes('/') : Address4.isValid(m[1]!) && !m[1]!.includes('/')
  if (!ok) ruleFault(field, v, 'is not an IP address')
  if (m[2] !== undefined && portFault(m[2])) ruleFault(field, v, 'has a port outside 1..65535')
  const ip = canonicalIp(m[1]!)
  const host = m6 ? `[${ip}]` : ip
  return m[2] !== undefined ? `${host}:${Number(m[2])}` : host
}

/** The value of an option, checked by what the option takes. */
export function optionValue(name: string, v: unknown): string {
  if (name === '--comment') {
    // quoted below; one line, printable ASCII, within the kernel's 255 bytes
    if (typeof v !== 'string') ruleFault(name, v, 'is not a string')
    const f = v.includes('\n') ? 'contains a newline' : v.includes('\r') ? 'contains a carriage return' : v.includes('\0') ? 'contains a NUL byte' : undefined
    if (f) ruleFault(name, v, f)
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(v)) ruleFault(name, v, 'contains a control character')
    if (/[^\x20-\x7e]/.test(v)) ruleFault(name, v, 'contains a non-ASCII character')
    if (v.length > 255) ruleFault(name, v, 'is longer than 255 characters')
    return v
  }
  if (name === '--to-destination' || name === '--to-source') return natDestValue(name, v)
  if (name === '--set-xmark' || name === '--mark') {
    const f = valueFault(v, /^(0x[0-9A-Fa-f]{1,8}|[0-9]{1,10})(\/(0x[0-9A-Fa-f]{1,8}|[0-9]{1,10}))?$/, 32)
    if (f) ruleFault(name, v, f === 'contains a character that is not allowed here' ? 'is not a mark value[/mask]' : f)
    return v as string
  }
  const f = valueFault(v, BARE)
  if (f) ruleFault(name, v, f)
  const s = v as string
  if (PORT_OPTIONS.has(name)) {
    const pf = portSpecFault(s)
    if (pf) ruleFault(name, v, pf)
  } else if (PORT_LIST_OPTIONS.has(name)) {
    const pf = portListFault(s)
    if (pf) ruleFault(name, v, pf)
  } else if (name === '--ctstate' || name === '--state' || name === '--dst-type' || name === '--src-type') {
    if (!/^[A-Za-z_]+(,[A-Za-z_]+)*$/.test(s)) ruleFault(name, v, 'is not a comma-separated list of names')
  }
  return s
}

/**
 * Checks a rule in save form (as saveForm renders it, or as iptables-save
 * printed it) token by token: bare tokens of BARE characters separated by
 * single spaces, `!` alone, no iptables command options, and one kind of
 * quoted token, the value of --comment, quoted like xtables_save_string()
 * (only \" \\ \' escapes, printable ASCII inside).
 */
export function specFault(spec: string): {tok: string; why: string} | undefined {
  if (typeof spec !== 'string') return {tok: String(spec), why: 'is not a string'}
  let i = 0
  let prev = ''
  while (i < spec.length) {
    if (i > 0) {
      if (spec[i] !== ' ') return {tok: spec.slice(i), why: 'is not separated by a space'}
      i++
      if (i >= spec.length || spec[i] === ' ') return {tok: spec, why: 'has an empty token'}
    }
    let tok: string
    if (spec[i] === '"') {
      if (prev !== '--comment') return {tok: spec.slice(i, i + 64), why: 'is a quoted value (only --comment takes one)'}
      let j = i + 1
      while (j < spec.length && spec[j] !== '"') {
        if (spec[j] === '\\') {
          if (!/["\\']/.test(spec[j + 1] ?? '')) return {tok: spec.slice(i, j + 2), why: 'has a bad escape in a quoted value'}
          j++
        }
        j++
      }
      if (j >= spec.length) return {tok: spec.slice(i), why: 'has an unterminated quote'}
      tok = spec.slice(i, j + 1)
      if (/[^\x20-\x7e]/.test(tok)) return {tok, why: /\n/.test(tok) ? 'contains a newline' : 'contains a control or non-ASCII character'}
      i = j + 1
    } else {
      const j = spec.indexOf(' ', i)
      tok = spec.slice(i, j < 0 ? spec.length : j)
      if (tok !== '!') {
        const f = tokenFault(tok, BARE)
        if (f) return {tok, why: f}
        if (COMMAND_OPTIONS.has(tok)) return {tok, why: 'is an iptables command option'}
      }
      i += tok.length
    }
    prev = tok
  }
  return undefined
}
