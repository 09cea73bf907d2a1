import {run, type ExecResult} from '../../sys/exec.js'
import {spawnStats} from '../ip/batch.js'
import {UnsafeTokenError, showToken, valueFault} from '../tokens.js'

/**
 * nftables through the nft CLI: one `nft -f -` per transaction. Scripts are
 * given as commands of words (NftCmd) and rendered by renderNft(), the one
 * place where script lines are assembled: every word is checked there, and a
 * bad one refuses the whole script before nft is spawned.
 *
 * Words are bare tokens of [A-Za-z0-9_.:/-] (not starting with '-'),
 * non-negative integers (handles), quoted strings made with nftQuoted() (the
 * same characters, at most 128: nft has no escape inside "..."), or a base
 * chain spec made with nftBaseChain() from typed fields.
 */

const NFT_TOKEN = /^[A-Za-z0-9_.:/-]+$/
const NFT_COMMANDS = new Set(['add', 'create', 'insert', 'delete', 'destroy', 'flush', 'list'])
const NFT_MAX_QUOTED = 128

function refuse(msg: string): never {
  throw new UnsafeTokenError(msg)
}

/** A value safe to place in an nft script (names, MACs); throws otherwise. */
export function nftToken(v: string): string {
  const f = valueFault(v, NFT_TOKEN)
  if (f) refuse(`nft: refused token ${showToken(v)} : ${f}`)
  return v
}

/** A string to render between double quotes (an interface name, a comment). */
export class NftQuoted {
  constructor(readonly value: string) {}
}
export function nftQuoted(value: string): NftQuoted {
  return new NftQuoted(value)
}

const CHAIN_TYPES = new Set(['filter', 'nat', 'route'])
const HOOKS = new Set(['prerouting', 'input', 'forward', 'output', 'postrouting', 'ingress', 'egress'])
const POLICIES = new Set(['accept', 'drop'])

/** `{ type <type> hook <hook> priority <n>; policy <policy>; }`, from checked fields. */
export class NftBaseChain {
  constructor(
    readonly type: string,
    readonly hook: string,
    readonly priority: number,
    readonly policy: string,
  ) {}
}
export function nftBaseChain(type: string, hook: string, priority: number, policy: string): NftBaseChain {
  return new NftBaseChain(type, hook, priority, policy)
}

export type NftWord = string | number | NftQuoted | NftBaseChain
export type NftCmd = NftWord[]

function renderWord(w: NftWord, where: string): string {
  if (typeof w === 'number') {
    if (!Number.isInteger(w) || w < 0 || w > 2 ** 53) refuse(`nft: refused number ${showToken(w)} in ${where} : not a non-negative integer`)
    return String(w)
  }
  if (w instanceof NftQuoted) {
    const f = valueFault(w.value, NFT_TOKEN, NFT_MAX_QUOTED)
    if (f) refuse(`nft: refused quoted value ${showToken(w.value)} in ${where} : ${f}`)
    return `"${w.value}"`
  }
  if (w instanceof NftBaseChain) {
    const bad = (field: string, v: unknown, why: string): never => refuse(`nft: refused ${field} ${showToken(v)} in ${where} : ${why}`)
    if (!CHAIN_TYPES.has(w.type)) bad('chain type', w.type, `not one of ${[...CHAIN_TYPES].join(', ')}`)
    if (!HOOKS.has(w.hook)) bad('hook', w.hook, `not one of ${[...HOOKS].join(', ')}`)
    if (!Number.isInteger(w.priority) || Math.abs(w.priority) > 1000) bad('priority', w.priority, 'not an integer -1000..1000')
    if (!POLICIES.has(w.policy)) bad('policy', w.policy, 'not accept or drop')
    return `{ type ${w.type} hook ${w.hook} priority ${w.priority}; policy ${w.policy}; }`
  }
  const f = valueFault(w, NFT_TOKEN)
  if (f) refuse(`nft: refused token ${showToken(w)} in ${where} : ${f}`)
  return w
}

/** Renders commands as an nft script, checking every word; throws UnsafeTokenError on the first bad one. */
export function renderNft(cmds: readonly NftCmd[]): string {
  const lines = cmds.map((cmd) => {
    if (!Array.isArray(cmd) || cmd.length === 0) refuse('nft: refused an empty command')
    const where = `command "${cmd.slice(0, 3).map((w) => (typeof w === 'string' && NFT_TOKEN.test(w) ? w : '?')).join(' ')}"`
    if (typeof cmd[0] !== 'string' || !NFT_COMMANDS.has(cmd[0])) refuse(`nft: refused token ${showToken(cmd[0])} in ${where} : not an nft command`)
    return cmd.map((w) => renderWord(w, where)).join(' ')
  })
  return lines.join('\n') + '\n'
}

/** Applies the commands with one `nft -f -` (rendered and checked first: nothing runs if a word is bad). */
export async function nftApply(cmds: readonly NftCmd[], opts: {allowFailure?: boolean} = {}): Promise<ExecResult> {
  const script = renderNft(cmds)
  spawnStats.count++
  return run('nft', ['-f', '-'], {input: script, allowFailure: opts.allowFailure})
}

export async function nftJson(args: string[]): Promise<unknown[]> {
  renderNft([args])
  spawnStats.count++
  const r = await run('nft', ['-j', ...args], {allowFailure: true})
  if (r.code !== 0) return []
  try {
    return ((JSON.parse(r.stdout) as {nftables?: unknown[]}).nftables ?? []) as unknown[]
  } catch {
    return []
  }
}
