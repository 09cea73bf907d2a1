/**
 * iptables state and batched changes, through iptables-save / iptables-restore.
 *
 * No CNI knowledge here. The model:
 *  - `readRuleset(family, table?)` runs ONE `iptables-save` (or ip6tables-save)
 *    and parses it into tables -> chains -> rules, each rule kept as the exact
 *    text iptables-save prints after `-A <chain> `.
 *  - `Tx` records changes against such a ruleset and simulates them, so the
 *    "unique" checks of later steps see earlier steps of the same transaction.
 *  - `NetfilterTx` is one explicit transaction: `plan()` takes our exclusive
 *    flock, reads each family once and records a caller's changes on the
 *    shared Txs; `commit()` applies everything with ONE
 *    `iptables-restore --noflush` per family (both families run in
 *    parallel); `release()` drops the lock. The runtime makes one per ADD or
 *    DEL chain and passes it to every plugin in its request, so the rules of
 *    a whole chain (bridge masquerade + portmap + firewall) reach the kernel
 *    together, once the chain has succeeded. New chains are created with
 *    `-N` (which fails if the chain exists) rather than `:CHAIN - [0:0]`
 *    (which, with --noflush, silently flushes an existing chain). If the
 *    restore fails because someone else (e.g. the reference plugins, which
 *    do not take our lock) changed the tables meanwhile, we re-read and
 *    re-plan (at most twice).
 *  - `readStates()` reads without the lock, for CHECK.
 *
 * Rules are given as argument arrays, as one would pass them to `iptables -A`,
 * and converted by `saveForm()` into the canonical text iptables-save prints,
 * so that comparisons with the kernel state and `-D` by exact spec work.
 */
import {Address4, Address6} from 'ip-address'
import {canonicalIp, type Family} from '../ip/addr.js'
import {run} from '../../sys/exec.js'
import {FileLock} from '../../sys/flock.js'
import {UnsafeTokenError, ifNameFault, portFault, showToken, tokenFault, valueFault} from '../tokens.js'

export const DEFAULT_LOCK_PATH = '/run/ctrnet/iptables.lock'

const SAVE_BIN: Record<Family, string> = {4: 'iptables-save', 6: 'ip6tables-save'}
const RESTORE_BIN: Record<Family, string> = {4: 'iptables-restore', 6: 'ip6tables-restore'}

/** Counters of what the last operations cost; for benchmarks and reports. */
export const iptablesStats = {spawns: 0, restores: 0, retries: 0}

// ---------------------------------------------------------------------------
// Canonical (iptables-save) rule text

/** Quotes a string the way xtables_save_string() does (used for --comment). */
export function saveString(value: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(value)) return value
  return `"${value.replace(/["\\']/g, (c) => `\\${c}`)}"`
}

function rawToken(value: string): string {
  return /[\s"'\\]/.test(value) || value === '' ? saveString(value) : value
}

const HEADER: Record<string, 's' | 'd' | 'i' | 'o' | 'p' | 'f'> = {
  '-s': 's', '--source': 's', '--src': 's',
  '-d': 'd', '--destination': 'd', '--dst': 'd',
  '-i': 'i', '--in-interface': 'i',
  '-o': 'o', '--out-interface': 'o',
  '-p': 'p', '--protocol': 'p',
  '-f': 'f', '--fragment': 'f',
}

/** Long-option aliases that iptables-save prints in their short form. */
const OPTION_ALIASES: Record<string, string> = {
  '--destination-port': '--dport',
  '--source-port': '--sport',
  '--destination-ports': '--dports',
  '--source-ports': '--sports',
}

/** Protocols whose name loads an implicit match of the same name (`-p tcp --dport` = `-p tcp -m tcp --dport`). */
const IMPLICIT_PROTO_MATCH = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'ipv6-icmp'])

/** Options of the protocol matches (tcp, udp, sctp, ...). */
const PROTO_OPTIONS = new Set(['--dport', '--sport', '--tcp-flags', '--syn', '--tcp-option', '--chunk-types', '--icmp-type', '--icmpv6-type'])

/** Options that always take exactly one value, even one that starts with '-'. */
const ONE_VALUE = new Set(['--comment', '--to-destination', '--to-source', '--set-xmark', '--mark'])

/**
 * Normalises an address as iptables prints it: network address plus prefix
 * (10.99.0.2/24 -> 10.99.0.0/24, 10.99.0.2 -> 10.99.0.2/32, fd99::2/64 -> fd99::/64).
 */
export function normalizeCidr(addr: string): string {
  if (Address4.isValid(addr)) {
    const a = new Address4(addr)
    return `${a.startAddress().correctForm()}/${a.subnetMask}`
  }
  if (Address6.isValid(addr)) {
    const a = new Address6(addr)
    return `${a.startAddress().correctForm()}/${a.subnetMask}`
  }
  return addr // a host name or something we do not know: leave it to iptables
}

// ---------------------------------------------------------------------------
// Token checks (the last line of defence: see tokens.ts)

/** Characters of a bare token in a rule (iptables-save never prints others unquoted for our rules). */
const BARE = /^[A-Za-z0-9_.,:/+@%=[\]-]+$/
/** Chain and target names: iptables allows 28 characters (XT_EXTENSION_MAXNAMELEN - 1). */
const CHAIN_CHARS = /^[A-Za-z0-9_.:+@-]+$/
export const MAX_CHAIN = 28
const TABLES = new Set(['filter', 'nat', 'mangle', 'raw', 'security'])
/** Protocols a rule may name (-p); numbers 0..255 too. */
const PROTOCOLS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'icmpv6', 'ipv6-icmp', 'esp', 'ah', 'gre', 'all'])
/** Options that are iptables commands (or change the table): never part of a rule. */
const COMMAND_OPTIONS = new Set([
  '-A', '--append', '-C', '--check', '-D', '--delete', '-I', '--insert', '-R', '--replace', '-L', '--list', '-S', '--list-rules',
  '-F', '--flush', '-Z', '--zero', '-N', '--new-chain', '-X', '--delete-chain', '-P', '--policy', '-E', '--rename-chain',
  '-t', '--table', '-w', '--wait', '-W', '--wait-interval', '-M', '--modprobe', '-h', '--help', '-V', '--version',
])
/** Options whose value is a port list or range, a state list, an address type list. */
const PORT_OPTIONS = new Set(['--dport', '--sport'])
const PORT_LIST_OPTIONS = new Set(['--dports', '--sports'])
/** Options that must be followed by a value. */
const NEEDS_VALUE = new Set([...PORT_OPTIONS, ...PORT_LIST_OPTIONS, '--ctstate', '--state', '--dst-type', '--src-type'])

function refuse(msg: string): never {
  throw new UnsafeTokenError(msg)
}

function ruleFault(field: string, tok: unknown, why: string): never {
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

/** Re-renders -s/-d values canonically (network address + prefix); refuses anything else. */
function addressValue(field: string, v: unknown): string {
  const f = valueFault(v, /^[0-9A-Fa-f:./]+$/, 64)
  if (f) ruleFault(field, v, f)
  const s = v as string
  if (!Address4.isValid(s) && !Address6.isValid(s)) ruleFault(field, v, 'is not an IP address or CIDR')
  return normalizeCidr(s)
}

/** ip:port or [ip6]:port (DNAT/SNAT), re-rendered canonically. */
function natDestValue(field: string, v: unknown): string {
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
function optionValue(name: string, v: unknown): string {
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
function specFault(spec: string): {tok: string; why: string} | undefined {
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

/**
 * Converts a rule given as `iptables -A` arguments into the text iptables-save
 * prints for it: the IP header matches first in the order -s -d -i -o -p -f
 * (addresses with their prefix), then the matches in the order given (with the
 * implicit protocol match made explicit), then the target, with --comment
 * values quoted like xtables_save_string().
 *
 * Every argument is checked as what its position makes it (an address, an
 * interface, a protocol, a port, a chain, a match, an option, a value) and a
 * bad one throws UnsafeTokenError naming the option: no caller can put a
 * newline, a second option or a quote into a rule through here.
 */
export function saveForm(args: readonly string[]): string {
  const header: Partial<Record<'s' | 'd' | 'i' | 'o' | 'p' | 'f', string>> = {}
  const blocks: string[][] = []
  let target: string[] | undefined
  let cur: string[] | undefined
  let neg = false
  for (let i = 0; i < args.length; i++) {
    const t = args[i]!
    if (t === '!') {
      neg = true
      continue
    }
    const h = HEADER[t]
    if (h) {
      const bang = neg ? '! ' : ''
      neg = false
      if (h === 'f') {
        header.f = `${bang}-f`
        continue
      }
      const raw = args[++i]
      let v: string
      if (h === 's' || h === 'd') v = addressValue(t, raw)
      else if (h === 'i' || h === 'o') {
        // an interface name, or a prefix with iptables' '+' wildcard
        const f = ifNameFault(typeof raw === 'string' && raw.endsWith('+') && raw.length > 1 ? raw.slice(0, -1) : raw)
        if (f) ruleFault(t, raw, f)
        v = raw!
      } else {
        const f = valueFault(raw, /^[A-Za-z0-9-]+$/, 16)
        if (f) ruleFault(t, raw, f)
        v = raw!.toLowerCase()
        if (!PROTOCOLS.has(v) && !(/^(0|[1-9][0-9]{0,2})$/.test(v) && Number(v) <= 255)) ruleFault(t, raw, 'is not a known protocol')
      }
      header[h] = `${bang}-${h} ${v}`
      continue
    }
    if (t === '-m' || t === '--match') {
      const m = args[++i]
      const f = valueFault(m, /^[A-Za-z0-9_]+$/, 28)
      if (f) ruleFault(t, m, f)
      cur = ['-m', m!]
      blocks.push(cur)
      neg = false
      continue
    }
    if (t === '-j' || t === '--jump' || t === '-g' || t === '--goto') {
      const tg = args[++i]
      const f = chainFault(tg)
      if (f) ruleFault(t, tg, f)
      target = [t.startsWith('-g') || t === '--goto' ? '-g' : '-j', tg!]
      cur = target
      neg = false
      continue
    }
    if (typeof t === 'string' && t.startsWith('-')) {
      const of = tokenFault(t, /^--?[A-Za-z0-9][A-Za-z0-9-]*$/, 64)
      if (of) ruleFault('an option', t, of)
      if (COMMAND_OPTIONS.has(t)) ruleFault('an option', t, 'is an iptables command option')
      const name = OPTION_ALIASES[t] ?? t
      const proto = header.p?.replace(/^(! )?-p /, '') ?? ''
      if (!cur || (PROTO_OPTIONS.has(name) && cur !== target && !IMPLICIT_PROTO_MATCH.has(cur[1]!))) {
        // an option no loaded match owns: it belongs to the implicit protocol match
        cur = blocks.find((b) => b[1] === proto) ?? ['-m', proto || '?']
        if (!blocks.includes(cur)) blocks.push(cur)
      }
      if (neg) cur.push('!')
      neg = false
      cur.push(name)
      if (ONE_VALUE.has(name)) {
        const v = optionValue(name, args[++i])
        cur.push(name === '--comment' ? saveString(v) : rawToken(v))
        continue
      }
      if (NEEDS_VALUE.has(name) && (i + 1 >= args.length || args[i + 1] === '!' || String(args[i + 1]).startsWith('-'))) {
        ruleFault(name, args[i + 1], i + 1 >= args.length ? 'is missing (the option needs a value)' : "starts with '-' or is '!' (the option needs a value)")
      }
      while (i + 1 < args.length && typeof args[i + 1] === 'string' && !args[i + 1]!.startsWith('-') && args[i + 1] !== '!') {
        cur.push(rawToken(optionValue(name, args[++i])))
      }
      continue
    }
    // a stray value: keep it where it is
    const f = valueFault(t, BARE)
    if (f) ruleFault('a value', t, f)
    if (!cur) blocks.push((cur = []))
    cur.push(rawToken(t))
  }
  if (neg) ruleFault("'!'", '!', 'negates nothing')
  const parts: string[] = []
  for (const k of ['s', 'd', 'i', 'o', 'p', 'f'] as const) if (header[k]) parts.push(header[k]!)
  for (const b of blocks) parts.push(b.join(' '))
  if (target) parts.push(target.join(' '))
  return parts.join(' ')
}

/** Splits one line of iptables-save output into arguments (handles "..." with backslash escapes). */
export function splitSaveLine(line: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < line.length) {
    while (line[i] === ' ') i++
    if (i >= line.length) break
    let tok = ''
    if (line[i] === '"') {
      i++
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) i++
        tok += line[i++]
      }
      i++
    } else {
      while (i < line.length && line[i] !== ' ') tok += line[i++]
    }
    out.push(tok)
  }
  return out
}

// ---------------------------------------------------------------------------
// Parsed state

export interface ChainState {
  /** Policy for built-in chains ('ACCEPT', 'DROP'), '-' for user chains. */
  policy: string
  rules: string[]
}

/** One family's tables as iptables-save prints them. */
export class Ruleset {
  constructor(
    readonly family: Family,
    readonly tables: Map<string, Map<string, ChainState>> = new Map(),
  ) {}

  static parse(family: Family, text: string): Ruleset {
    const rs = new Ruleset(family)
    let table: Map<string, ChainState> | undefined
    for (const raw of text.split('\n')) {
      const line = raw.trimEnd()
      if (!line || line.startsWith('#')) continue
      if (line.startsWith('*')) {
        table = new Map()
        rs.tables.set(line.slice(1), table)
      } else if (line === 'COMMIT') {
        table = undefined
      } else if (table && line.startsWith(':')) {
        const [name, policy] = line.slice(1).split(' ')
        table.set(name!, {policy: policy ?? '-', rules: []})
      } else if (table && line.startsWith('-A ')) {
        const rest = line.slice(3)
        const sp = rest.indexOf(' ')
        const chain = sp < 0 ? rest : rest.slice(0, sp)
        const spec = sp < 0 ? '' : rest.slice(sp + 1)
        let c = table.get(chain)
        if (!c) table.set(chain, (c = {policy: '-', rules: []}))
        c.rules.push(spec)
      }
    }
    return rs
  }

  clone(): Ruleset {
    const t = new Map<string, Map<string, ChainState>>()
    for (const [name, chains] of this.tables) {
      const c = new Map<string, ChainState>()
      for (const [cn, st] of chains) c.set(cn, {policy: st.policy, rules: [...st.rules]})
      t.set(name, c)
    }
    return new Ruleset(this.family, t)
  }

  hasChain(table: string, chain: string): boolean {
    return this.tables.get(table)?.has(chain) ?? false
  }

  rules(table: string, chain: string): readonly string[] {
    return this.tables.get(table)?.get(chain)?.rules ?? []
  }

  hasRule(table: string, chain: string, spec: string): boolean {
    return this.rules(table, chain).includes(spec)
  }

  chains(table: string): string[] {
    return [...(this.tables.get(table)?.keys() ?? [])]
  }

  /** Every [chain, spec] in the table whose target is `-j <target>` (or -g). */
  refsTo(table: string, target: string): Array<[string, string]> {
    const out: Array<[string, string]> = []
    for (const [chain, st] of this.tables.get(table) ?? []) {
      for (const spec of st.rules) if (spec.endsWith(`-j ${target}`) || spec.endsWith(`-g ${target}`)) out.push([chain, spec])
    }
    return out
  }

  /** The text iptables-save would print, minus comment lines and counters. */
  toText(): string {
    const lines: string[] = []
    for (const [name, chains] of this.tables) {
      lines.push(`*${name}`)
      for (const [cn, st] of chains) lines.push(`:${cn} ${st.policy} [0:0]`)
      for (const [cn, st] of chains) for (const r of st.rules) lines.push(r ? `-A ${cn} ${r}` : `-A ${cn}`)
      lines.push('COMMIT')
    }
    return lines.join('\n') + '\n'
  }
}

const BUILTIN: Record<string, string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
}

export function isBuiltinChain(table: string, chain: string): boolean {
  return BUILTIN[table]?.includes(chain) ?? false
}

// ---------------------------------------------------------------------------
// Transactions

/**
 * A planned set of changes for one family, simulated against a copy of the
 * state it was read from. Each method is idempotent against that state: it
 * emits a restore line only when something actually changes.
 */
export class Tx {
  readonly state: Ruleset
  private lines = new Map<string, string[]>()

  constructor(readonly before: Ruleset) {
    this.state = before.clone()
  }

  get family(): Family {
    return this.before.family
  }

  get empty(): boolean {
    return this.lines.size === 0
  }

  /**
   * The one place where restore lines are assembled: checks the table, the
   * chain name and the rule (specFault) and throws UnsafeTokenError before the
   * line is recorded. Every public method calls it before changing anything,
   * whether or not it ends up emitting the line.
   */
  private line(table: string, op: '-N' | '-A' | '-I' | '-D' | '-F' | '-X', chain: string, spec?: string): string {
    if (typeof table !== 'string' || !TABLES.has(table)) refuse(`iptables: refused table ${showToken(table)} : not one of ${[...TABLES].join(', ')}`)
    const cf = chainFault(chain)
    if (cf) refuse(`iptables: refused chain name ${showToken(chain)} in table ${table} : ${cf}`)
    if (spec === undefined) return `${op} ${chain}`
    if (spec === '' && op !== '-I') return `${op} ${chain}`
    const sf = specFault(spec)
    if (sf) refuse(`iptables: refused token ${showToken(sf.tok)} in rule for chain ${chain} : ${sf.why}`)
    return op === '-I' ? `-I ${chain} 1${spec ? ` ${spec}` : ''}` : `${op} ${chain} ${spec}`
  }

  private emit(table: string, line: string): void {
    let l = this.lines.get(table)
    if (!l) this.lines.set(table, (l = []))
    l.push(line)
  }

  private chainState(table: string, chain: string): ChainState {
    let t = this.state.tables.get(table)
    if (!t) {
      t = new Map()
      for (const b of BUILTIN[table] ?? []) t.set(b, {policy: 'ACCEPT', rules: []})
      this.state.tables.set(table, t)
    }
    let c = t.get(chain)
    if (!c) t.set(chain, (c = {policy: isBuiltinChain(table, chain) ? 'ACCEPT' : '-', rules: []}))
    return c
  }

  /** Creates a user chain unless it exists (never flushes an existing one). */
  ensureChain(table: string, chain: string): this {
    const line = this.line(table, '-N', chain)
    if (!this.state.hasChain(table, chain) && !isBuiltinChain(table, chain)) {
      this.chainState(table, chain)
      this.emit(table, line)
    }
    return this
  }

  /** Appends a rule (save form) unless an identical one is in the chain. */
  appendUnique(table: string, chain: string, spec: string): this {
    return this.addUnique(table, chain, spec, '-A')
  }

  /** Inserts a rule (save form) at position 1 unless an identical one is in the chain. */
  insertUnique(table: string, chain: string, spec: string): this {
    return this.addUnique(table, chain, spec, '-I')
  }

  private addUnique(table: string, chain: string, spec: string, op: '-A' | '-I'): this {
    const line = this.line(table, op, chain, spec)
    if (!this.state.hasRule(table, chain, spec)) {
      const rules = this.chainState(table, chain).rules
      if (op === '-A') rules.push(spec)
      else rules.unshift(spec)
      this.emit(table, line)
    }
    return this
  }

  /** Deletes every copy of a rule (save form) that is in the chain. */
  deleteRule(table: string, chain: string, spec: string): this {
    const line = this.line(table, '-D', chain, spec)
    const c = this.state.tables.get(table)?.get(chain)
    if (!c) return this
    for (let i = c.rules.indexOf(spec); i >= 0; i = c.rules.indexOf(spec)) {
      c.rules.splice(i, 1)
      this.emit(table, line)
    }
    return this
  }

  /** Flushes a chain if it has rules. */
  flushChain(table: string, chain: string): this {
    const line = this.line(table, '-F', chain)
    const c = this.state.tables.get(table)?.get(chain)
    if (c && c.rules.length) {
      c.rules = []
      this.emit(table, line)
    }
    return this
  }

  /**
   * Removes a user chain and every jump to it from any chain of the table:
   * delete the jumps, flush, delete the chain. No-op when the chain is absent.
   */
  removeChain(table: string, chain: string): this {
    const line = this.line(table, '-X', chain)
    for (const [from, spec] of this.state.refsTo(table, chain)) this.deleteRule(table, from, spec)
    if (this.state.hasChain(table, chain)) {
      this.flushChain(table, chain)
      this.state.tables.get(table)!.delete(chain)
      this.emit(table, line)
    }
    return this
  }

  /** The iptables-restore --noflush input, or '' when there is nothing to do. */
  restoreInput(): string {
    const out: string[] = []
    for (const [table, lines] of this.lines) out.push(`*${table}`, ...lines, 'COMMIT')
    return out.length ? out.join('\n') + '\n' : ''
  }
}

/** Runs iptables-save (all tables, or one) for a family and parses it. */
export async function readRuleset(family: Family, table?: string): Promise<Ruleset> {
  iptablesStats.spawns++
  const res = await run(SAVE_BIN[family], table ? ['-t', table] : [], {allowFailure: true})
  if (res.code !== 0) {
    // A table that the kernel has never seen is not an error: it is empty.
    if (table && /table .* does not exist|Table does not exist/i.test(res.stderr)) return new Ruleset(family)
    throw new Error(`${SAVE_BIN[family]}: ${res.stderr.trim() || `exit ${res.code}`}`)
  }
  return Ruleset.parse(family, res.stdout)
}

async function readState(family: Family, tables: readonly string[]): Promise<Ruleset> {
  // One table: `-t <table>`. Several: one dump of all tables is one spawn instead of several.
  return readRuleset(family, tables.length === 1 ? tables[0] : undefined)
}

async function restore(family: Family, input: string): Promise<{ok: boolean; stderr: string}> {
  iptablesStats.spawns++
  iptablesStats.restores++
  const res = await run(RESTORE_BIN[family], ['--noflush', '-w', '5'], {input, allowFailure: true})
  return {ok: res.code === 0, stderr: res.stderr.trim()}
}

export interface TransactOptions {
  /** The families to read and change. */
  families: readonly Family[]
  /** The tables the plan touches (one table: `iptables-save -t`, else a full save). */
  tables: readonly string[]
  /** Families whose save tool may fail (e.g. no IPv6 support): treated as absent instead of an error. */
  optionalFamilies?: readonly Family[]
}

/** How many times a failed restore is re-planned against a fresh read before giving up. */
const MAX_RETRIES = 2

async function readFamilies(families: readonly Family[], tables: readonly string[] | undefined, optional: readonly Family[]): Promise<Array<Ruleset | undefined>> {
  return Promise.all(
    families.map(async (f) => {
      try {
        return await (tables ? readState(f, tables) : readRuleset(f))
      } catch (err) {
        if (optional.includes(f)) return undefined
        throw err
      }
    }),
  )
}

/** Applies the non-empty Txs, one restore per family, in parallel. Returns the first failure. */
async function applyTxs(txs: Iterable<Tx>): Promise<string | undefined> {
  const work = [...txs].filter((tx) => !tx.empty)
  const outcomes = await Promise.all(work.map((tx) => restore(tx.family, tx.restoreInput())))
  const failed = outcomes.findIndex((o) => !o.ok)
  return failed < 0 ? undefined : `${RESTORE_BIN[work[failed]!.family]}: ${outcomes[failed]!.stderr || 'failed'}`
}

type Plan = (txs: Map<Family, Tx>) => unknown

/**
 * One explicit netfilter transaction, as netavark hands its firewall driver
 * to each network driver: the runtime creates one per ADD or DEL chain and
 * gives it to every plugin in its request; a plugin records its changes with
 * `plan()`; the runtime applies them all with `commit()` once the chain has
 * succeeded, and drops the lock with `release()` in any case.
 *
 *  - `plan()` takes our exclusive flock (at the first plan), reads each
 *    family it names once (a full iptables-save, shared by every later
 *    plan), and runs `fn` on one Tx per family; the Txs are shared, so a
 *    plan sees the changes of the plans before it. Nothing reaches the
 *    kernel. Concurrent plan() calls run one after the other. A plan that
 *    throws leaves nothing behind: the Txs are rebuilt from the plans that
 *    succeeded.
 *  - `commit()` applies everything with one `iptables-restore --noflush` per
 *    family that has changes (the families in parallel). When a restore
 *    fails because someone else (e.g. the reference plugins, which do not
 *    take our lock) changed the tables meanwhile, every family is re-read
 *    and every recorded plan runs again, in order (at most MAX_RETRIES
 *    times): a plan must therefore be a pure function of the Txs it is given.
 *  - `release()` drops the lock; idempotent. A transaction that is released
 *    without a commit has applied nothing.
 *
 * A transaction nobody planned on costs nothing: no lock, no spawn.
 */
export class NetfilterTx {
  private lock?: FileLock
  /** Full saves per family read so far; undefined = optional family not available. */
  private states = new Map<Family, Ruleset | undefined>()
  private txs = new Map<Family, Tx>()
  private readonly plans: Array<{opts: TransactOptions; plan: Plan}> = []
  /** Serialises the plan() calls. */
  private queue: Promise<unknown> = Promise.resolve()
  private done = false

  /** `lockPath`: our flock shared by every ctrnet process that changes iptables. */
  constructor(private readonly lockPath: string = DEFAULT_LOCK_PATH) {}

  /**
   * Records changes: `fn` gets one Tx per family of `opts.families` that is
   * available (an optional family whose save tool fails is left out) and
   * returns whatever the caller needs. Applied only by commit().
   */
  plan<T>(opts: TransactOptions, fn: (txs: Map<Family, Tx>) => T): Promise<T> {
    const p = this.queue.then(() => this.record(opts, fn))
    this.queue = p.catch(() => undefined)
    return p
  }

  /** Applies every recorded plan, one iptables-restore per family (errors of the restore surface here). */
  async commit(): Promise<void> {
    await this.queue
    this.assertOpen()
    this.done = true
    for (let attempt = 0; ; attempt++) {
      const failure = await applyTxs(this.txs.values())
      if (!failure) return
      if (attempt >= MAX_RETRIES) throw new Error(failure)
      iptablesStats.retries++
      // someone changed the tables under us: re-read everything and re-plan in order
      const families = [...this.states.keys()]
      const optional = [...new Set(this.plans.flatMap((p) => p.opts.optionalFamilies ?? []))]
      const read = await readFamilies(families, undefined, optional)
      this.states = new Map(families.map((f, i) => [f, read[i]]))
      this.replay()
    }
  }

  /** Drops the lock (if taken); the transaction can take no more plans. Idempotent. */
  release(): void {
    this.done = true
    this.lock?.release()
    this.lock = undefined
  }

  private assertOpen(): void {
    if (this.done) throw new Error('iptables: the netfilter transaction is already committed or released')
  }

  private async record<T>(opts: TransactOptions, fn: (txs: Map<Family, Tx>) => T): Promise<T> {
    this.assertOpen()
    if (!this.lock) {
      this.lock = await FileLock.acquire(this.lockPath, {mode: 0o600})
      iptablesStats.spawns++
      // released while waiting for the lock: give it back at once
      if (this.done) this.release()
      this.assertOpen()
    }
    const missing = opts.families.filter((f) => !this.states.has(f))
    const read = await readFamilies(missing, undefined, opts.optionalFamilies ?? [])
    missing.forEach((f, i) => this.states.set(f, read[i]))
    let result: T
    try {
      result = fn(this.txsFor(opts.families))
    } catch (err) {
      // drop whatever the failed plan recorded: rebuild from the plans that succeeded
      this.replay()
      throw err
    }
    this.plans.push({opts, plan: fn})
    return result
  }

  /** Rebuilds the Txs from the current states by running the recorded plans in order. */
  private replay(): void {
    this.txs = new Map()
    for (const {opts, plan} of this.plans) plan(this.txsFor(opts.families))
  }

  private txsFor(families: readonly Family[]): Map<Family, Tx> {
    const txs = new Map<Family, Tx>()
    for (const f of families) {
      const st = this.states.get(f)
      if (!st) continue
      let tx = this.txs.get(f)
      if (!tx) this.txs.set(f, (tx = new Tx(st)))
      txs.set(f, tx)
    }
    return txs
  }
}

/** Reads the state of the given families without taking the lock (for CHECK). */
export async function readStates(families: readonly Family[], tables: readonly string[], optional: readonly Family[] = []): Promise<Map<Family, Ruleset>> {
  const out = new Map<Family, Ruleset>()
  const states = await readFamilies(families, tables, optional)
  families.forEach((f, i) => states[i] && out.set(f, states[i]!))
  return out
}
