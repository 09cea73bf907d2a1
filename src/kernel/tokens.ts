/**
 * The last line of defence of the batch writers (iptables-restore input,
 * ip -batch lines, nft scripts, sysctl writes): every token a writer puts into
 * a script passes through here before anything is written or spawned.
 *
 * A "bare" token may hold only the characters its writer allows; whatever it
 * holds, these are always refused with a reason that names them: newline, CR,
 * NUL, other control characters, '#', quotes, backslash, whitespace,
 * non-ASCII (look-alike digits, RTL marks), the empty string and very long
 * strings. In a value position (a chain, an address, a port, a name) a token
 * must not start with '-' (it would be read as an option).
 *
 * Errors are one line: the token is shown JSON-escaped (newlines as \n) and
 * cut to a readable length.
 */

/** Longest token any writer accepts (the iptables comment limit is lower, 255 bytes). */
export const MAX_TOKEN = 256

/** A writer refused a value: nothing was written. */
export class UnsafeTokenError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnsafeTokenError'
  }
}

/** The token as shown in an error message: JSON-escaped, cut after 48 characters. */
export function showToken(tok: unknown): string {
  if (typeof tok !== 'string') return typeof tok === 'number' ? String(tok) : `(${typeof tok})`
  if (tok.length <= 64) return asciiJson(tok)
  return `${asciiJson(tok.slice(0, 48))}... (${tok.length} chars)`
}

/** JSON string with every character outside printable ASCII escaped (U+2028 is a line break to a terminal). */
function asciiJson(s: string): string {
  return JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * Why `tok` cannot be a bare token, or undefined when it can. `allowed` is the
 * writer's character set (tested last, after the named faults).
 */
export function tokenFault(tok: unknown, allowed: RegExp, maxLen = MAX_TOKEN): string | undefined {
  if (typeof tok !== 'string') return 'is not a string'
  if (tok === '') return 'is empty'
  if (tok.includes('\n')) return 'contains a newline'
  if (tok.includes('\r')) return 'contains a carriage return'
  if (tok.includes('\0')) return 'contains a NUL byte'
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(tok)) return 'contains a control character'
  if (tok.includes('#')) return "contains '#'"
  if (/["']/.test(tok)) return 'contains a quote'
  if (tok.includes('\\')) return 'contains a backslash'
  if (/\s/.test(tok)) return 'contains whitespace'
  if (/[^\x20-\x7e]/.test(tok)) return 'contains a non-ASCII character'
  if (tok.length > maxLen) return `is longer than ${maxLen} characters`
  if (!allowed.test(tok)) return 'contains a character that is not allowed here'
  return undefined
}

/** Like tokenFault, and also refuses a leading '-' (a value that would read as an option). */
export function valueFault(tok: unknown, allowed: RegExp, maxLen = MAX_TOKEN): string | undefined {
  const f = tokenFault(tok, allowed, maxLen)
  if (f) return f
  if ((tok as string).startsWith('-')) return "starts with '-' (would be read as an option)"
  return undefined
}

/** A port number 1..65535 given as a number or its decimal text (no sign, no leading zero). */
export function portFault(v: unknown): string | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^[1-9][0-9]{0,4}$/.test(v) ? Number(v) : NaN
  if (!Number.isInteger(n) || n < 1 || n > 65535) return 'is not a port number 1..65535'
  return undefined
}

/** Interface names: 1..15 characters, no '/', ':', whitespace; not '.' or '..'; not starting with '-'. */
export const IFNAME_CHARS = /^[A-Za-z0-9_.@+-]+$/
/** Why v is not an interface name, as a refusal's reason, or undefined when it is one. */
export function ifNameProblem(v: unknown): string | undefined {
  const f = ifNameFault(v)
  return f ? `${showToken(v)} is not an interface name: it ${f}` : undefined
}

export function ifNameFault(v: unknown): string | undefined {
  const f = valueFault(v, IFNAME_CHARS, 15)
  if (f) return f === 'is longer than 15 characters' ? 'is longer than 15 characters (IFNAMSIZ)' : f
  if (v === '.' || v === '..') return "is '.' or '..'"
  return undefined
}

/**
 * Sysctl keys are relative /proc/sys paths with slashes, e.g.
 * net/ipv4/conf/eth0/arp_notify: under net/, components of [A-Za-z0-9_.@:+-]
 * (interface names may hold '.', '@', '+', '-'), 1..64 characters each, none
 * '.' or '..', none starting with '-', at most 12 components.
 */
const SYSCTL_KEY = /^net(\/[A-Za-z0-9_.@:+-]{1,64}){1,11}$/
export function assertSysctlKey(key: string): void {
  const f =
    tokenFault(key, /^[A-Za-z0-9_.@:+/-]+$/, 512) ??
    (!SYSCTL_KEY.test(key) ? 'is not a key under net/ of the form net/<a>/<b>...' : undefined) ??
    (key.split('/').some((p) => p === '.' || p === '..') ? "has a '.' or '..' component" : undefined) ??
    (key.split('/').some((p) => p.startsWith('-')) ? "has a component starting with '-'" : undefined)
  if (f) throw new UnsafeTokenError(`sysctl: invalid net sysctl key ${showToken(key)} : ${f}`)
}

/**
 * Keys whose value is a list of numbers or names separated by single spaces
 * (proc_dointvec vectors, the congestion control list). Every other value is
 * one token.
 */
const SYSCTL_LIST_KEYS = new Set([
  'net/ipv4/ping_group_range',
  'net/ipv4/ip_local_port_range',
  'net/ipv4/tcp_rmem',
  'net/ipv4/tcp_wmem',
  'net/ipv4/tcp_mem',
  'net/ipv4/udp_mem',
  'net/ipv4/tcp_allowed_congestion_control',
  'net/sctp/sctp_mem',
  'net/sctp/sctp_rmem',
  'net/sctp/sctp_wmem',
])
const SYSCTL_VALUE = /^[A-Za-z0-9_.:,/+@=-]+$/

/**
 * Throws unless value may be written to the sysctl `key` (slash form): one
 * token of [A-Za-z0-9_.:,/+@=-] (a leading '-' is fine: values such as -1 are
 * real; the value is never an option anywhere), at most 256 characters, or
 * for the list keys above tokens separated by single spaces. The empty value
 * is allowed (an empty write, e.g. clearing ip_local_reserved_ports).
 */
export function assertSysctlValue(key: string, value: string): void {
  if (value === '') return
  const list = SYSCTL_LIST_KEYS.has(key)
  const parts = list && typeof value === 'string' ? value.split(' ') : [value]
  for (const p of parts) {
    const f = tokenFault(p, SYSCTL_VALUE)
    if (f) {
      const why = list && p === '' ? 'has more than one space between values, or a leading/trailing space' : list || f !== 'contains whitespace' ? f : 'contains whitespace (only list keys such as net.ipv4.ping_group_range take "a b")'
      throw new UnsafeTokenError(`sysctl: refused value ${showToken(value)} for ${key} : ${why}`)
    }
  }
  if (value === '--') throw new UnsafeTokenError(`sysctl: refused value ${showToken(value)} for ${key} : is "--"`)
}
