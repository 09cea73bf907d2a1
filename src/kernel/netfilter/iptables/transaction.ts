/**
 * NetfilterTx, the iptables backend's transaction: one lock, one
 * iptables-save per family, the changes of every plan of a chain recorded on
 * shared Txs (ruleset.ts), and one iptables-restore --noflush per family at
 * commit (both families in parallel). If the restore fails because someone
 * else (e.g. the reference plugins, which do not take our lock) changed the
 * tables meanwhile, we re-read and re-plan (at most twice).
 */
import type {Family} from '../../ip/addr.js'
import type {FileLock} from '../../../sys/flock.js'
import {DEFAULT_LOCK_PATH, applyTxs, iptablesStats, readFamilies, takeLock} from './io.js'
import {Tx, type Ruleset} from './ruleset.js'

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

type Plan = (txs: Map<Family, Tx>) => unknown

/**
 * One explicit netfilter transaction, under the seam's FirewallTx of one ADD
 * or DEL chain (backend.ts): each intent a plugin states records its changes
 * with `plan()`; the runtime applies them all with `commit()` once the chain
 * has succeeded, and drops the lock with `release()` in any case.
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
      this.lock = await takeLock(this.lockPath)
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
