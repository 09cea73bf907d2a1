import {run, type ExecResult} from '../../lib/exec.js'
import {spawnStats} from './ip.js'

/**
 * nftables through the nft CLI: one `nft -f -` per transaction. Callers build
 * scripts only from validated tokens (see nftToken).
 */

const NFT_TOKEN = /^[A-Za-z0-9_.:/-]+$/

/** A value safe to place in an nft script (names, MACs); quoted strings too. */
export function nftToken(v: string): string {
  if (!NFT_TOKEN.test(v)) throw new Error(`refusing unsafe value for nft: ${JSON.stringify(v)}`)
  return v
}

export async function nftApply(script: string, opts: {allowFailure?: boolean} = {}): Promise<ExecResult> {
  spawnStats.count++
  return run('nft', ['-f', '-'], {input: script, allowFailure: opts.allowFailure})
}

export async function nftJson(args: string[]): Promise<unknown[]> {
  for (const a of args) nftToken(a)
  spawnStats.count++
  const r = await run('nft', ['-j', ...args], {allowFailure: true})
  if (r.code !== 0) return []
  try {
    return ((JSON.parse(r.stdout) as {nftables?: unknown[]}).nftables ?? []) as unknown[]
  } catch {
    return []
  }
}
