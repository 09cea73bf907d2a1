/**
 * The iptables backend's processes: one `iptables-save` (or ip6tables-save)
 * per read, one `iptables-restore --noflush` per family and commit, and our
 * flock, shared by every ctrnet process that changes iptables. Counters of
 * what they cost (`iptablesStats`) for benchmarks and reports.
 */
import type {Family} from '../../ip/addr.js'
import {run} from '../../../sys/exec.js'
import {FileLock} from '../../../sys/flock.js'
import {Ruleset, type Tx} from './ruleset.js'

export const DEFAULT_LOCK_PATH = '/run/ctrnet/iptables.lock'

const SAVE_BIN: Record<Family, string> = {4: 'iptables-save', 6: 'ip6tables-save'}
const RESTORE_BIN: Record<Family, string> = {4: 'iptables-restore', 6: 'ip6tables-restore'}

/**
 * The programs a chain that changes iptables needs (the IPv6 tools are
 * optional: a host without IPv6 has none), checked by the runtime before it
 * starts the chain.
 */
export const IPTABLES_PROGRAMS: readonly string[] = ['iptables-save', 'iptables-restore', 'flock']

/** Counters of what the last operations cost; for benchmarks and reports. */
export const iptablesStats = {spawns: 0, restores: 0, retries: 0}

/** Takes our exclusive flock (one process: flock). */
export async function takeLock(lockPath: string): Promise<FileLock> {
  const lock = await FileLock.acquire(lockPath, {mode: 0o600})
  iptablesStats.spawns++
  return lock
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

export async function restore(family: Family, input: string): Promise<{ok: boolean; stderr: string}> {
  iptablesStats.spawns++
  iptablesStats.restores++
  const res = await run(RESTORE_BIN[family], ['--noflush', '-w', '5'], {input, allowFailure: true})
  return {ok: res.code === 0, stderr: res.stderr.trim()}
}

export async function readFamilies(families: readonly Family[], tables: readonly string[] | undefined, optional: readonly Family[]): Promise<Array<Ruleset | undefined>> {
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
export async function applyTxs(txs: Iterable<Tx>): Promise<string | undefined> {
  const work = [...txs].filter((tx) => !tx.empty)
  const outcomes = await Promise.all(work.map((tx) => restore(tx.family, tx.restoreInput())))
  const failed = outcomes.findIndex((o) => !o.ok)
  return failed < 0 ? undefined : `${RESTORE_BIN[work[failed]!.family]}: ${outcomes[failed]!.stderr || 'failed'}`
}

/** Reads the state of the given families without taking the lock (for CHECK). */
export async function readStates(families: readonly Family[], tables: readonly string[], optional: readonly Family[] = []): Promise<Map<Family, Ruleset>> {
  const out = new Map<Family, Ruleset>()
  const states = await readFamilies(families, tables, optional)
  families.forEach((f, i) => states[i] && out.set(f, states[i]!))
  return out
}
