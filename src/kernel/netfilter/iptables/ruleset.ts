/**
 * The parsed model of one family's tables and the simulation of changes on
 * it. `Ruleset` is what iptables-save printed: tables -> chains -> rules, each
 * rule kept as the exact text iptables-save prints after `-A <chain> `. `Tx`
 * records changes against such a ruleset and simulates them, so that the
 * "unique" checks of later steps see earlier steps of the same transaction,
 * and renders them as iptables-restore --noflush input. New chains are
 * created with `-N` (which fails if the chain exists) rather than
 * `:CHAIN - [0:0]` (which, with --noflush, silently flushes an existing
 * chain). No processes here.
 */
import type {Family} from '../../ip/addr.js'
import {showToken} from '../../tokens.js'
import {TABLES, chainFault, refuse, specFault} from './rules.js'

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
// The simulation of changes

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
