/**
 * The nftables backend's script writer: the one place where the text fed to
 * `nft -f -` is assembled. A script is a small language, so nothing reaches it
 * as a free string: every word is a typed value made by one of the builders
 * below, each of which checks its input and throws UnsafeTokenError for
 * anything it cannot encode:
 *
 *   kw        nft keywords and operators, from a fixed list
 *   ident     table, chain and set names: [A-Za-z_][A-Za-z0-9_.-]* (nft
 *             1.0.6 takes no quoted names; a name that is an nft keyword makes
 *             nft fail, it cannot change the script)
 *   addr      an IP address (src/kernel/ip parsing), of the family asked for
 *   net       a CIDR, rendered as its network (host bits cleared)
 *   port      1..65535; proto: tcp, udp, sctp
 *   ifname    an interface name (rendered quoted)
 *   comment   printable ASCII without quotes, backslash, ';', '{', '}', '#',
 *             '$', at most 128 characters (nft has no escapes inside "...")
 *   handle    a rule handle, a non-negative integer
 *   bits      a 32-bit mask of packet mark bits, rendered 0x%08x
 *
 * A statement is rendered only from such words; the script is checked as a
 * whole before anything is spawned (renderScript throws on the first bad word).
 */
import {networkOf, parseCidr, parseIp, type Family} from '../../ip/addr.js'
import {UnsafeTokenError, ifNameFault, showToken} from '../../tokens.js'

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'bridge'
const FAMILIES = new Set<string>(['ip', 'ip6', 'inet', 'bridge'])

/** One checked word of a script. Made only by the builders of this module. */
export class NftWord {
  private constructor(readonly text: string) {}
  /** @internal the builders' constructor */
  static make(text: string): NftWord {
    return new NftWord(text)
  }
}

function refuse(what: string, v: unknown, why: string): never {
  throw new UnsafeTokenError(`nftables: refused ${what} ${showToken(v)} : ${why}`)
}

const KEYWORDS = [
  'ip', 'ip6', 'saddr', 'daddr', 'tcp', 'udp', 'sctp', 'th', 'dport', 'sport', 'meta', 'l4proto', 'nfproto',
  'iifname', 'oifname', 'ct', 'state', 'status', 'new', 'established', 'related', 'established,related', 'dnat', 'snat',
  'to', 'masquerade', 'return', 'goto', 'jump', 'accept', 'drop', 'fib', 'type', 'local', '==', '!=', '&', '.', '0',
  'mark', 'set', '|',
] as const
export type Keyword = (typeof KEYWORDS)[number]
const KEYWORD_SET = new Set<string>(KEYWORDS)

/** An nft keyword or operator from the fixed list. */
export function kw(k: Keyword): NftWord {
  if (!KEYWORD_SET.has(k)) refuse('keyword', k, 'not an nft keyword this writer knows')
  return NftWord.make(k)
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/
/** Why `v` cannot name a table, chain or set, or undefined. */
export function identFault(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'is not a string'
  if (!IDENT.test(v)) return 'is not a name of [A-Za-z_][A-Za-z0-9_.-]*, at most 64 characters'
  return undefined
}
/** A table, chain or set name. */
export function ident(v: string): NftWord {
  const f = identFault(v)
  if (f) refuse('name', v, f)
  return NftWord.make(v)
}

/** A reference to a named set: @name. */
export function setRef(v: string): NftWord {
  return NftWord.make(`@${ident(v).text}`)
}

/** An IP address (of `family` when given), in canonical form. */
export function addr(v: string, family?: Family): NftWord {
  let p: {v6: boolean; ip: string}
  try {
    p = parseIp(v, {keepMapped: true})
  } catch {
    return refuse('address', v, 'is not an IP address')
  }
  if (family && (family === 6) !== p.v6) refuse('address', v, `is not an IPv${family} address`)
  return NftWord.make(p.ip)
}

/** A CIDR rendered as its network (10.88.0.5/16 -> 10.88.0.0/16). */
export function net(v: string, family?: Family): NftWord {
  let c
  try {
    c = networkOf(parseCidr(v, {keepMapped: true}))
  } catch {
    return refuse('network', v, 'is not a CIDR')
  }
  if (family && (family === 6) !== c.v6) refuse('network', v, `is not an IPv${family} network`)
  return NftWord.make(`${c.ip}/${c.prefix}`)
}

/** A port number 1..65535. */
export function port(v: number): NftWord {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) refuse('port', v, 'is not a port number 1..65535')
  return NftWord.make(String(v))
}

export type L4Proto = 'tcp' | 'udp' | 'sctp'
/** Why `v` is not a protocol this backend publishes, or undefined. */
export function protoFault(v: unknown): string | undefined {
  return v === 'tcp' || v === 'udp' || v === 'sctp' ? undefined : 'is not tcp, udp or sctp'
}
export function proto(v: string): NftWord {
  const f = protoFault(v)
  if (f) refuse('protocol', v, f)
  return NftWord.make(v)
}

/** `ip:port` or `[ip6]:port`: the target of a dnat. */
export function dnatTarget(ip: string, p: number, family: Family): NftWord {
  const a = addr(ip, family).text
  return NftWord.make(family === 6 ? `[${a}]:${port(p).text}` : `${a}:${port(p).text}`)
}

/** An interface name, quoted. */
export function ifname(v: string): NftWord {
  const f = ifNameFault(v)
  if (f) refuse('interface name', v, f)
  return NftWord.make(`"${v}"`)
}

/** An interface name prefix matched as a wildcard ("<prefix>*"): a prefix of a valid interface name. */
export function ifnamePrefix(v: string): NftWord {
  if (!/^[A-Za-z0-9_.-]{1,14}$/.test(v)) refuse('interface name prefix', v, 'is not 1-14 characters of [A-Za-z0-9_.-]')
  return NftWord.make(`"${v}*"`)
}

export const COMMENT_MAX = 128
const COMMENT_CHARS = /^[A-Za-z0-9 _.,:/@+=()-]*$/
/** Why `v` cannot be a comment, or undefined. */
export function commentFault(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'is not a string'
  if (v === '') return 'is empty'
  if (/[\r\n]/.test(v)) return 'contains a newline'
  if (/["'\\]/.test(v)) return 'contains a quote or a backslash'
  if (/[;{}#$]/.test(v)) return "contains one of ; { } # $"
  if (/[^\x20-\x7e]/.test(v)) return 'contains a character outside printable ASCII'
  if (v.length > COMMENT_MAX) return `is longer than ${COMMENT_MAX} characters`
  if (!COMMENT_CHARS.test(v)) return 'contains a character that is not allowed in a comment'
  return undefined
}
/** A comment, quoted. */
export function comment(v: string): NftWord {
  const f = commentFault(v)
  if (f) refuse('comment', v, f)
  return NftWord.make(`"${v}"`)
}

/** A rule handle. */
export function handle(v: number): NftWord {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) refuse('handle', v, 'is not a non-negative integer')
  return NftWord.make(String(v))
}

/** A packet mark mask (1..0xffffffff), rendered as 0x followed by 8 hex digits. */
export function bits(v: number): NftWord {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffffffff) refuse('mark bits', v, 'is not an integer 1..0xffffffff')
  return NftWord.make(`0x${v.toString(16).padStart(8, '0')}`)
}

function family(f: NftFamily): string {
  if (!FAMILIES.has(f)) refuse('family', f, 'is not ip, ip6, inet or bridge')
  return f
}

/** A base chain: its hook and priority (numbers: nft lists them with names). */
export interface BaseChain {
  type: 'filter' | 'nat'
  hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting'
  priority: number
}
const HOOKS = new Set(['prerouting', 'input', 'forward', 'output', 'postrouting'])

function baseSpec(b: BaseChain): string {
  if (b.type !== 'filter' && b.type !== 'nat') refuse('chain type', b.type, 'is not filter or nat')
  if (!HOOKS.has(b.hook)) refuse('hook', b.hook, 'is not a hook of ip, ip6 or inet')
  if (!Number.isInteger(b.priority) || Math.abs(b.priority) > 1000) refuse('priority', b.priority, 'is not an integer -1000..1000')
  return `type ${b.type} hook ${b.hook} priority ${b.priority} ;`
}

export type SetType = 'ifname' | 'ipv4_addr' | 'ipv6_addr' | 'ifname . ifname'
const SET_TYPES = new Set<string>(['ifname', 'ipv4_addr', 'ipv6_addr', 'ifname . ifname'])

/** A rule's body: its words in order. */
export type Rule = readonly NftWord[]

function words(ws: Rule, what: string): string {
  if (!Array.isArray(ws) || ws.length === 0) refuse(what, ws, 'is empty')
  return ws
    .map((w) => {
      if (!(w instanceof NftWord)) refuse(`word of ${what}`, w, 'is not a checked word')
      return w.text
    })
    .join(' ')
}

/**
 * An nft script in the making: one method per statement, each line checked
 * as it is added. `text()` is the script for `nft -f -`.
 */
export class NftScript {
  private readonly lines: string[] = []

  get empty(): boolean {
    return this.lines.length === 0
  }

  get size(): number {
    return this.lines.length
  }

  addTable(f: NftFamily, table: string, tableComment?: string): this {
    const c = tableComment === undefined ? '' : ` { comment ${comment(tableComment).text} ; }`
    return this.push(`add table ${family(f)} ${ident(table).text}${c}`)
  }

  /** A regular chain, or a base chain; with a comment (regular chains only). */
  addChain(f: NftFamily, table: string, chain: string, opts: {base?: BaseChain; comment?: string} = {}): this {
    const head = `add chain ${family(f)} ${ident(table).text} ${ident(chain).text}`
    if (opts.base) return this.push(`${head} { ${baseSpec(opts.base)} }`)
    if (opts.comment !== undefined) return this.push(`${head} { comment ${comment(opts.comment).text} ; }`)
    return this.push(head)
  }

  flushChain(f: NftFamily, table: string, chain: string): this {
    return this.push(`flush chain ${family(f)} ${ident(table).text} ${ident(chain).text}`)
  }

  addRule(f: NftFamily, table: string, chain: string, rule: Rule, ruleComment?: string): this {
    const c = ruleComment === undefined ? '' : ` comment ${comment(ruleComment).text}`
    return this.push(`add rule ${family(f)} ${ident(table).text} ${ident(chain).text} ${words(rule, 'rule')}${c}`)
  }

  deleteRule(f: NftFamily, table: string, chain: string, h: number): this {
    return this.push(`delete rule ${family(f)} ${ident(table).text} ${ident(chain).text} handle ${handle(h).text}`)
  }

  addSet(f: NftFamily, table: string, set: string, type: SetType): this {
    if (!SET_TYPES.has(type)) refuse('set type', type, 'is not a set type this writer knows')
    return this.push(`add set ${family(f)} ${ident(table).text} ${ident(set).text} { type ${type} ; }`)
  }

  /** Elements: each one word, or a concatenation of words (`a . b`). */
  addElements(f: NftFamily, table: string, set: string, elements: ReadonlyArray<NftWord | readonly NftWord[]>): this {
    return this.elements('add', f, table, set, elements)
  }

  /** Deletes elements; nft fails on a missing one, so callers add them first in the same script (idempotent). */
  deleteElements(f: NftFamily, table: string, set: string, elements: ReadonlyArray<NftWord | readonly NftWord[]>): this {
    return this.elements('delete', f, table, set, elements)
  }

  /** Appends another script's lines. */
  append(other: NftScript): this {
    this.lines.push(...other.lines)
    return this
  }

  text(): string {
    return this.lines.length ? `${this.lines.join('\n')}\n` : ''
  }

  private elements(op: 'add' | 'delete', f: NftFamily, table: string, set: string, elements: ReadonlyArray<NftWord | readonly NftWord[]>): this {
    if (elements.length === 0) return this
    const es = elements.map((e) => (e instanceof NftWord ? words([e], 'element') : (e as readonly NftWord[]).map((w) => words([w], 'element')).join(' . ')))
    return this.push(`${op} element ${family(f)} ${ident(table).text} ${ident(set).text} { ${es.join(', ')} }`)
  }

  private push(line: string): this {
    this.lines.push(line)
    return this
  }
}
