/**
 * The canonical text of rules: what iptables-save prints. Rules are given as
 * argument arrays, as one would pass them to `iptables -A`, and converted by
 * `saveForm()` into that text, so that comparisons with the kernel state and
 * `-D` by exact spec work. Escaping (`saveString`, like
 * xtables_save_string()), address normalisation and the splitting of a saved
 * line live here too. Every argument is checked by rules.ts on the way.
 */
import {Address4, Address6} from 'ip-address'
import {ifNameFault, tokenFault, valueFault} from '../../tokens.js'
import {BARE, COMMAND_OPTIONS, NEEDS_VALUE, PROTOCOLS, addressValue, chainFault, optionValue, ruleFault} from './rules.js'

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
      if (h === 's' || h === 'd') v = normalizeCidr(addressValue(t, raw))
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
