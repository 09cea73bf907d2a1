import {run, type ExecResult} from '../../lib/exec.js'
import {nsenterArgv} from './netns.js'

/**
 * iproute2 in batch mode: one process runs many commands, read from stdin.
 *
 * Every token is checked before it is written into the batch, so no value can
 * start a new command, a comment or a quoted word in ip's batch tokenizer.
 */
export type IpCmd = string[]

const TOKEN = /^[A-Za-z0-9_.:/+%@,-]+$/

export function assertToken(tok: string): void {
  if (typeof tok !== 'string' || !TOKEN.test(tok)) throw new Error(`refusing unsafe value for ip batch: ${JSON.stringify(tok)}`)
}

/** Renders commands as an ip -batch script, validating every token. */
export function renderBatch(cmds: IpCmd[]): string {
  return cmds
    .map((cmd) => {
      if (cmd.length === 0) throw new Error('empty ip batch command')
      for (const tok of cmd) assertToken(tok)
      return cmd.join(' ')
    })
    .join('\n') + '\n'
}

/** Sysctl keys are relative /proc/sys paths with slashes, e.g. net/ipv4/conf/eth0/arp_notify. */
const SYSCTL_KEY = /^net\/[A-Za-z0-9_.@:+-]+(\/[A-Za-z0-9_.@:+-]+)*$/
export function assertSysctlKey(key: string): void {
  if (!SYSCTL_KEY.test(key) || key.split('/').some((p) => p === '.' || p === '..')) {
    throw new Error(`invalid net sysctl key: ${JSON.stringify(key)}`)
  }
}

export interface BatchOptions {
  /** Run inside this network namespace (a path, e.g. /var/run/netns/x). */
  netns?: string
  /** Add -j so show commands print JSON (one document per line). */
  json?: boolean
  /** Add -d (details) to show commands. */
  details?: boolean
  /**
   * Sysctls to write inside the namespace before the batch runs (same process
   * chain: nsenter -> sh -> ip). Write errors are ignored (as the reference
   * bridge ignores them) unless sysctlStrict, which fails naming the key.
   */
  sysctls?: Array<[string, string]>
  sysctlStrict?: boolean
  allowFailure?: boolean
}

/** Counts processes spawned by this module (for benchmarks and reports). */
export const spawnStats = {count: 0}

// A constant script: the keys/values arrive as positional arguments, never as
// shell text. Writes "<value>" to /proc/sys/<key> for each pair up to "--",
// then execs ip with the remaining arguments.
const SYSCTL_THEN_IP =
  'm=$1; shift; while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do ' +
  'if ! { printf "%s" "$2" >"/proc/sys/$1"; } 2>/dev/null && [ "$m" = strict ]; then echo "sysctl: failed to write /proc/sys/$1" >&2; exit 1; fi; ' +
  'shift 2; done; shift; exec ip "$@"'

export async function ipBatch(cmds: IpCmd[], opts: BatchOptions = {}): Promise<ExecResult> {
  const input = renderBatch(cmds)
  const ipArgs = [...(opts.json ? ['-j'] : []), ...(opts.details ? ['-d'] : []), '-batch', '-']
  let argv: string[]
  if (opts.sysctls && opts.sysctls.length > 0) {
    const pairs: string[] = []
    for (const [k, v] of opts.sysctls) {
      assertSysctlKey(k)
      if (v === '--' || v.includes('\0')) throw new Error(`invalid sysctl value ${JSON.stringify(v)}`)
      pairs.push(k, v)
    }
    argv = ['sh', '-c', SYSCTL_THEN_IP, 'sh', opts.sysctlStrict ? 'strict' : 'lax', ...pairs, '--', ...ipArgs]
  } else {
    argv = ['ip', ...ipArgs]
  }
  if (opts.netns !== undefined) argv = nsenterArgv(opts.netns, argv)
  spawnStats.count++
  const res = await run(argv[0], argv.slice(1), {input, allowFailure: true})
  if (res.code !== 0 && !opts.allowFailure) throw new Error(batchError(res))
  return res
}

/** The first meaningful line of a failed batch's stderr. */
export function batchError(res: ExecResult): string {
  const lines = res.stderr.split('\n').map((l) => l.trim()).filter(Boolean)
  const msg = lines.filter((l) => !/^Command failed/.test(l)).join('; ') || lines.join('; ')
  return msg || `ip exited with ${res.code}`
}

/** Runs one ip command (json output) and parses it. */
export async function ipJson<T = unknown>(args: string[], netns?: string): Promise<T> {
  for (const a of args) assertToken(a)
  let argv = ['ip', '-j', ...args]
  if (netns !== undefined) argv = nsenterArgv(netns, argv)
  spawnStats.count++
  const res = await run(argv[0], argv.slice(1))
  const out = res.stdout.trim()
  return (out ? JSON.parse(out) : []) as T
}

/**
 * Splits the stdout of `ip -j -batch` into the JSON documents the show
 * commands printed (each is one line).
 */
export function parseJsonLines(stdout: string): unknown[] {
  const docs: unknown[] = []
  for (const line of stdout.split('\n')) {
    const t = line.trim()
    if (!t) continue
    try {
      docs.push(JSON.parse(t))
    } catch {
      // not JSON (should not happen with -j); ignore
    }
  }
  return docs
}
