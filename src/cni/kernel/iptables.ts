/**
 * iptables state and batched changes, through iptables-save / iptables-restore.
 *
 * No CNI knowledge here. The model:
 *  - `readRuleset(family, table?)` runs ONE `iptables-save` (or ip6tables-save)
 *    and parses it into tables -> chains -> rules, each rule kept as the exact
 *    text iptables-save prints after `-A <chain> `.
 *  - `Tx` records changes against such a ruleset and simulates them, so the
 *    "unique" checks of later steps see earlier steps of the same transaction.
 *  - `transact()` takes our exclusive flock, reads the state, lets the caller
 *    plan its changes, and applies them with ONE `iptables-restore --noflush`
 *    per family (both families run in parallel). New chains are created with
 *    `-N` (which fails if the chain exists) rather than `:CHAIN - [0:0]`
 *    (which, with --noflush, silently flushes an existing chain). If the
 *    restore fails because someone else (e.g. the reference plugins, which do
 *    not take our lock) changed the tables meanwhile, we re-read and re-plan
 *    (at most twice).
 *  - `iptablesBatch(fn)` merges every transact() made inside fn into one
 *    transaction (one lock, one full save and one restore per family), for a
 *    runtime that wants a whole ADD/DEL chain in one go.
 *
 * Rules are given as argument arrays, as one would pass them to `iptables -A`,
 * and converted by `saveForm()` into the canonical text iptables-save prints,
 * so that comparisons with the kernel state and `-D` by exact spec work.
 */
import {AsyncLocalStorage} from 'node:async_hooks'
import {Address4, Address6} from 'ip-address'
import {run} from '../../lib/exec.js'
import {FileLock} from '../../lib/flock.js'

export type Family = 4 | 6

export const DEFAULT_LOCK_PATH = '/run/ctrnet/iptables.lock'

function lockPath(): string {
  return process.env.CTRNET_IPTABLES_LOCK || DEFAULT_LOCK_PATH
}

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

/** Formats an address (no prefix) the way iptables prints it. */
export function formatIp(addr: string): string {
  if (Address4.isValid(addr)) return new Address4(addr).correctForm()
  if (Address6.isValid(addr)) return new Address6(addr).correctForm()
  return addr
}

/**
 * Converts a rule given as `iptables -A` arguments into the text iptables-save
 * prints for it: the IP header matches first in the order -s -d -i -o -p -f
 * (addresses with their prefix), then the matches in the order given (with the
 * implicit protocol match made explicit), then the target, with --comment
 * values quoted like xtables_save_string().
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
      let v = args[++i] ?? ''
      if (h === 's' || h === 'd') v = normalizeCidr(v)
      if (h === 'p') v = v.toLowerCase()
      header[h] = `${bang}-${h} ${v}`
      continue
    }
    if (t === '-m' || t === '--match') {
      cur = ['-m', args[++i] ?? '']
      blocks.push(cur)
      neg = false
      continue
    }
    if (t === '-j' || t === '--jump' || t === '-g' || t === '--goto') {
      target = [t.startsWith('-g') || t === '--goto' ? '-g' : '-j', args[++i] ?? '']
      cur = target
      neg = false
      continue
    }
    if (t.startsWith('-')) {
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
        const v = args[++i] ?? ''
        cur.push(name === '--comment' ? saveString(v) : rawToken(v))
        continue
      }
      while (i + 1 < args.length && !args[i + 1]!.startsWith('-') && args[i + 1] !== '!') {
        cur.push(rawToken(args[++i]!))
      }
      continue
    }
    // a stray value: keep it where it is
    if (!cur) blocks.push((cur = []))
    cur.push(rawToken(t))
  }
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
    if (!this.state.hasChain(table, chain) && !isBuiltinChain(table, chain)) {
      this.chainState(table, chain)
      this.emit(table, `-N ${chain}`)
    }
    return this
  }

  /** Appends a rule (save form) unless an identical one is in the chain. */
  appendUnique(table: string, chain: string, spec: string): this {
    if (!this.state.hasRule(table, chain, spec)) {
      this.chainState(table, chain).rules.push(spec)
      this.emit(table, `-A ${chain} ${spec}`)
    }
    return this
  }

  /** Inserts a rule (save form) at position 1 unless an identical one is in the chain. */
  insertUnique(table: string, chain: string, spec: string): this {
    if (!this.state.hasRule(table, chain, spec)) {
      this.chainState(table, chain).rules.unshift(spec)
      this.emit(table, `-I ${chain} 1 ${spec}`)
    }
    return this
  }

  /** Deletes every copy of a rule (save form) that is in the chain. */
  deleteRule(table: string, chain: string, spec: string): this {
    const c = this.state.tables.get(table)?.get(chain)
    if (!c) return this
    for (let i = c.rules.indexOf(spec); i >= 0; i = c.rules.indexOf(spec)) {
      c.rules.splice(i, 1)
      this.emit(table, `-D ${chain} ${spec}`)
    }
    return this
  }

  /** Flushes a chain if it has rules. */
  flushChain(table: string, chain: string): this {
    const c = this.state.tables.get(table)?.get(chain)
    if (c && c.rules.length) {
      c.rules = []
      this.emit(table, `-F ${chain}`)
    }
    return this
  }

  /**
   * Removes a user chain and every jump to it from any chain of the table:
   * delete the jumps, flush, delete the chain. No-op when the chain is absent.
   */
  removeChain(table: string, chain: string): this {
    for (const [from, spec] of this.state.refsTo(table, chain)) this.deleteRule(table, from, spec)
    if (this.state.hasChain(table, chain)) {
      this.flushChain(table, chain)
      this.state.tables.get(table)!.delete(chain)
      this.emit(table, `-X ${chain}`)
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

interface Batch {
  lock?: FileLock
  /** Full saves per family read so far; undefined = optional family not available. */
  states: Map<Family, Ruleset | undefined>
  txs: Map<Family, Tx>
  plans: Array<{opts: TransactOptions; plan: Plan}>
  /** Serialises the transact() calls made inside the batch. */
  queue: Promise<unknown>
}

const batchStore = new AsyncLocalStorage<Batch>()

function txsFor(batch: Batch, families: readonly Family[]): Map<Family, Tx> {
  const txs = new Map<Family, Tx>()
  for (const f of families) {
    const st = batch.states.get(f)
    if (!st) continue
    let tx = batch.txs.get(f)
    if (!tx) batch.txs.set(f, (tx = new Tx(st)))
    txs.set(f, tx)
  }
  return txs
}

async function planInBatch<T>(batch: Batch, opts: TransactOptions, plan: (txs: Map<Family, Tx>) => T): Promise<T> {
  if (!batch.lock) {
    batch.lock = await FileLock.acquire(lockPath(), {mode: 0o600})
    iptablesStats.spawns++
  }
  const missing = opts.families.filter((f) => !batch.states.has(f))
  const read = await readFamilies(missing, undefined, opts.optionalFamilies ?? [])
  missing.forEach((f, i) => batch.states.set(f, read[i]))
  let result: T
  try {
    result = plan(txsFor(batch, opts.families))
  } catch (err) {
    // drop whatever the failed plan recorded: rebuild from the plans that succeeded
    batch.txs = new Map()
    for (const p of batch.plans) p.plan(txsFor(batch, p.opts.families))
    throw err
  }
  batch.plans.push({opts, plan})
  return result
}

async function commitBatch(batch: Batch): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const failure = await applyTxs(batch.txs.values())
    if (!failure) return
    if (attempt >= MAX_RETRIES) throw new Error(failure)
    iptablesStats.retries++
    // someone changed the tables under us: re-read everything and re-plan in order
    const families = [...batch.states.keys()]
    const optional = [...new Set(batch.plans.flatMap((p) => p.opts.optionalFamilies ?? []))]
    const read = await readFamilies(families, undefined, optional)
    batch.states = new Map(families.map((f, i) => [f, read[i]]))
    batch.txs = new Map()
    for (const {opts, plan} of batch.plans) plan(txsFor(batch, opts.families))
  }
}

/**
 * Runs `fn` with every transact() inside it (in this async context) merged
 * into one transaction: the lock is taken once, each family is read once (a
 * full iptables-save), each plan is recorded against the shared simulated
 * state, and when `fn` returns everything is applied with one
 * iptables-restore per family. If `fn` throws, nothing is applied. Meant for
 * the runtime around a whole ADD or DEL chain (bridge masquerade + portmap +
 * firewall = 3 spawns instead of 9). Nested calls join the outer batch.
 */
export async function iptablesBatch<T>(fn: () => Promise<T>): Promise<T> {
  if (batchStore.getStore()) return fn()
  const batch: Batch = {states: new Map(), txs: new Map(), plans: [], queue: Promise.resolve()}
  try {
    const result = await batchStore.run(batch, fn)
    await commitBatch(batch)
    return result
  } finally {
    batch.lock?.release()
  }
}

/**
 * Reads the state of the given families under our exclusive lock, lets `plan`
 * record changes on one Tx per family, and applies them with one
 * `iptables-restore --noflush` per family that has changes. When a restore
 * fails (the tables changed under us: a chain appeared, a rule vanished), the
 * state is re-read and `plan` runs again (at most MAX_RETRIES times). `plan`
 * must therefore be a pure function of the state it is given.
 *
 * Inside iptablesBatch() the plan is only recorded and the restore happens
 * when the batch ends (errors of the restore surface there).
 */
export async function transact<T>(opts: TransactOptions, plan: (txs: Map<Family, Tx>) => T): Promise<T> {
  const batch = batchStore.getStore()
  if (batch) {
    const p = batch.queue.then(() => planInBatch(batch, opts, plan))
    batch.queue = p.catch(() => undefined)
    return p
  }
  const lock = await FileLock.acquire(lockPath(), {mode: 0o600})
  iptablesStats.spawns++
  try {
    for (let attempt = 0; ; attempt++) {
      const states = await readFamilies(opts.families, opts.tables, opts.optionalFamilies ?? [])
      const txs = new Map<Family, Tx>()
      opts.families.forEach((f, i) => states[i] && txs.set(f, new Tx(states[i]!)))
      const result = plan(txs)
      const failure = await applyTxs(txs.values())
      if (!failure) return result
      if (attempt >= MAX_RETRIES) throw new Error(failure)
      iptablesStats.retries++
    }
  } finally {
    lock.release()
  }
}

/** Reads the state of the given families without taking the lock (for CHECK). */
export async function readStates(families: readonly Family[], tables: readonly string[], optional: readonly Family[] = []): Promise<Map<Family, Ruleset>> {
  const out = new Map<Family, Ruleset>()
  const states = await readFamilies(families, tables, optional)
  families.forEach((f, i) => states[i] && out.set(f, states[i]!))
  return out
}

/** The address family of an IP or CIDR string. */
export function familyOf(addr: string): Family {
  return Address4.isValid(addr) ? 4 : 6
}
