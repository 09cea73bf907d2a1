/**
 * The nftables backend's processes: one `nft -f -` per commit (the script on
 * stdin, applied by the kernel as one transaction), and `nft --json list
 * table ...` to find rules by comment (their handles) on removal and CHECK.
 * A missing nft is the project's missingProgram error (Debian package
 * nftables). Counters of what they cost (`nftStats`) for benchmarks and tests.
 */
import {run} from '../../../sys/exec.js'
import {FileLock} from '../../../sys/flock.js'
import {ident, type NftFamily, type NftScript} from './script.js'

/** The lock of the nftables backend when the runtime gives none. */
export const DEFAULT_NFT_LOCK_PATH = '/run/ctrnet/nftables.lock'

/** The programs a chain that changes the firewall runs. */
export const NFT_PROGRAMS: readonly string[] = ['nft']

/** Counters of what the operations cost; for benchmarks and tests. */
export const nftStats = {spawns: 0, applies: 0, lists: 0, retries: 0, /** iptables processes of the generic accept (iptables-accept.ts), also in spawns */ iptables: 0}

/** Applies a script with one `nft -f -`: ok, or nft's error text. */
export async function nftApply(script: NftScript): Promise<{ok: boolean; stderr: string}> {
  const input = script.text()
  if (!input) return {ok: true, stderr: ''}
  nftStats.spawns++
  nftStats.applies++
  const res = await run('nft', ['-f', '-'], {input, allowFailure: true})
  return {ok: res.code === 0, stderr: res.stderr.trim()}
}

/** A rule as listed: where it is, its handle and comment (the rule text is not parsed). */
export interface ListedRule {
  chain: string
  handle: number
  comment?: string
}

/** What a listed table holds: its chains, rules and set elements. */
export interface ListedTable {
  chains: Set<string>
  rules: ListedRule[]
  /** Set name to its elements, each rendered as text (`a . b` for concatenations). */
  sets: Map<string, string[]>
}

type JsonItem = {
  chain?: {name: string}
  rule?: {chain: string; handle: number; comment?: string}
  set?: {name: string; elem?: unknown[]}
}

function elementText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e)
  if (e && typeof e === 'object') {
    const o = e as {concat?: unknown[]; elem?: {val: unknown}; prefix?: {addr: string; len: number}}
    if (o.concat) return o.concat.map(elementText).join(' . ')
    if (o.elem) return elementText(o.elem.val)
    if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`
  }
  return JSON.stringify(e)
}

/** Parses `nft --json list table` output. */
export function parseListing(json: string): ListedTable {
  const items = ((JSON.parse(json) as {nftables?: JsonItem[]}).nftables ?? []) as JsonItem[]
  const out: ListedTable = {chains: new Set(), rules: [], sets: new Map()}
  for (const it of items) {
    if (it.chain) out.chains.add(it.chain.name)
    else if (it.rule) out.rules.push({chain: it.rule.chain, handle: Number(it.rule.handle), ...(it.rule.comment !== undefined ? {comment: it.rule.comment} : {})})
    else if (it.set) out.sets.set(it.set.name, (it.set.elem ?? []).map(elementText))
  }
  return out
}

/** Lists one table (`nft --json list table <family> <table>`); undefined when it does not exist. */
export async function nftListTable(f: NftFamily, table: string): Promise<ListedTable | undefined> {
  nftStats.spawns++
  nftStats.lists++
  const res = await run('nft', ['--json', 'list', 'table', f, ident(table).text], {allowFailure: true})
  if (res.code !== 0) {
    if (/No such file or directory|does not exist/i.test(res.stderr)) return undefined
    throw new Error(`nft list table ${f} ${table}: ${res.stderr.trim() || `exit ${res.code}`}`)
  }
  try {
    return parseListing(res.stdout)
  } catch {
    throw new Error(`nft list table ${f} ${table}: unreadable JSON output`)
  }
}

/** Takes the backend's exclusive flock (one process: flock). */
export async function takeNftLock(lockPath: string): Promise<FileLock> {
  nftStats.spawns++
  return FileLock.acquire(lockPath, {mode: 0o600})
}
