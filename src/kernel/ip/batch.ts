import {run, type ExecResult} from '../../sys/exec.js'
import {Address4, Address6} from 'ip-address'
import {nsenterArgv} from '../netns.js'
import {UnsafeTokenError, assertSysctlKey, assertSysctlValue, ifNameFault, showToken, valueFault} from '../tokens.js'

/**
 * iproute2 in batch mode: one process runs many commands, read from stdin.
 *
 * Every token is checked before it is written into the batch, so no value can
 * start a new command, a comment or a quoted word in ip's batch tokenizer.
 */
export type IpCmd = string[]

const TOKEN = /^[A-Za-z0-9_.:/+%@,-]+$/

function refuse(msg: string): never {
  throw new UnsafeTokenError(msg)
}

/** Throws unless tok is a safe ip batch token (no whitespace, quote, '#', newline; not starting with '-'). */
export function assertToken(tok: string, where = 'ip command'): void {
  const f = valueFault(tok, TOKEN)
  if (f) refuse(`ip: refused token ${showToken(tok)} in ${where} : ${f}`)
}

/** Keywords whose value has a type that renderBatch checks. */
const IFNAME_AFTER = new Set(['dev', 'name', 'master'])
const UINT_AFTER = new Set(['mtu', 'txqueuelen', 'vlan_filtering', 'vid'])
const MAC_AFTER = new Set(['address'])
const IP_AFTER = new Set(['via'])
const OBJECTS = new Set(['link', 'addr', 'address', 'route', 'neigh', 'rule'])

/** Checks one command token by token: the charset, then the typed values after known keywords. */
function checkCmd(cmd: IpCmd): void {
  if (!Array.isArray(cmd) || cmd.length === 0) refuse('ip: refused an empty batch command')
  const where = `command "${cmd.slice(0, 2).map((t) => (typeof t === 'string' && TOKEN.test(t) ? t : '?')).join(' ')}"`
  cmd.forEach((tok) => assertToken(tok, where))
  if (!OBJECTS.has(cmd[0]!)) refuse(`ip: refused token ${showToken(cmd[0])} in ${where} : not an ip object (${[...OBJECTS].join(', ')})`)
  for (let i = 1; i + 1 < cmd.length; i++) {
    const k = cmd[i]!
    const v = cmd[i + 1]!
    let f: string | undefined
    if (IFNAME_AFTER.has(k)) f = ifNameFault(v)
    else if (UINT_AFTER.has(k)) f = /^(0|[1-9][0-9]{0,9})$/.test(v) && Number(v) <= 0x7fffffff ? undefined : 'is not a non-negative integer'
    else if ((MAC_AFTER.has(k) && cmd[0] === 'link') || (k === 'lladdr' && cmd[0] === 'neigh')) f = MAC.test(v) ? undefined : 'is not a MAC address'
    else if (IP_AFTER.has(k)) f = Address4.isValid(v) || Address6.isValid(v) ? undefined : 'is not an IP address'
    else continue
    if (f) refuse(`ip: refused token ${showToken(v)} for ${k} in ${where} : ${f}`)
    i++
  }
}
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/

/**
 * Renders commands as an ip -batch script: the one place where batch lines
 * are assembled. Every command is checked first (checkCmd); one bad token
 * refuses the whole batch before anything runs.
 */
export function renderBatch(cmds: IpCmd[]): string {
  for (const cmd of cmds) checkCmd(cmd)
  return cmds.map((cmd) => cmd.join(' ')).join('\n') + '\n'
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

/** What one `ip -batch` run returned, with the command that failed. */
export interface BatchResult extends ExecResult {
  /**
   * The 1-based line of the batch command that failed, as ip names it on
   * stderr ("Command failed -:N"); 0 when the run succeeded or named none.
   */
  failedAt: number
}

/** The 1-based line of the failed command named in a batch's stderr, or 0. */
export function failedCommand(res: Pick<ExecResult, 'stderr'>): number {
  return Number(/Command failed -:(\d+)/.exec(res.stderr)?.[1] ?? 0)
}

export async function ipBatch(cmds: IpCmd[], opts: BatchOptions = {}): Promise<BatchResult> {
  const input = renderBatch(cmds)
  const ipArgs = [...(opts.json ? ['-j'] : []), ...(opts.details ? ['-d'] : []), '-batch', '-']
  let argv: string[]
  if (opts.sysctls && opts.sysctls.length > 0) {
    const pairs: string[] = []
    for (const [k, v] of opts.sysctls) {
      assertSysctlKey(k)
      assertSysctlValue(k, v)
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
  return {...res, failedAt: res.code === 0 ? 0 : failedCommand(res)}
}

/** The first meaningful line of a failed batch's stderr. */
export function batchError(res: ExecResult): string {
  const lines = res.stderr.split('\n').map((l) => l.trim()).filter(Boolean)
  const msg = lines.filter((l) => !/^Command failed/.test(l)).join('; ') || lines.join('; ')
  return msg || `ip exited with ${res.code}`
}

/** Runs one ip command (json output) and parses it. */
export async function ipJson<T = unknown>(args: string[], netns?: string): Promise<T> {
  checkCmd(args)
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

/**
 * iproute2's `bridge -batch -` for FDB entries (what `ip` cannot do): each
 * command is `fdb <add|append|replace|del> <mac> dev <ifname> [dst <ip>] [self]
 * [permanent]`, every token checked as for ip batches, the MAC, device and
 * destination by type. One bad token refuses the whole batch.
 */
export function renderBridgeBatch(cmds: IpCmd[]): string {
  for (const cmd of cmds) {
    if (!Array.isArray(cmd) || cmd.length < 3) refuse('bridge: refused a short batch command')
    const where = `command "fdb ${TOKEN.test(cmd[1] ?? '') ? cmd[1] : '?'}"`
    cmd.forEach((tok) => assertToken(tok, where))
    if (cmd[0] !== 'fdb') refuse(`bridge: refused token ${showToken(cmd[0])} in ${where} : only fdb commands`)
    if (!['add', 'append', 'replace', 'del'].includes(cmd[1]!)) refuse(`bridge: refused token ${showToken(cmd[1])} in ${where} : not an fdb verb`)
    if (!MAC.test(cmd[2]!)) refuse(`bridge: refused token ${showToken(cmd[2])} in ${where} : is not a MAC address`)
    for (let i = 3; i < cmd.length; i++) {
      const k = cmd[i]!
      if (k === 'self' || k === 'permanent') continue
      const v = cmd[i + 1]
      let f: string | undefined
      if (k === 'dev') f = ifNameFault(v)
      else if (k === 'dst') f = v !== undefined && (Address4.isValid(v) || Address6.isValid(v)) ? undefined : 'is not an IP address'
      else refuse(`bridge: refused token ${showToken(k)} in ${where} : not an fdb keyword (dev, dst, self, permanent)`)
      if (f) refuse(`bridge: refused token ${showToken(v)} for ${k} in ${where} : ${f}`)
      i++
    }
  }
  return cmds.map((cmd) => cmd.join(' ')).join('\n') + '\n'
}

/** Runs FDB commands through one `bridge -batch -` process (see renderBridgeBatch). */
export async function bridgeBatch(cmds: IpCmd[], opts: {allowFailure?: boolean} = {}): Promise<BatchResult> {
  const input = renderBridgeBatch(cmds)
  spawnStats.count++
  const res = await run('bridge', ['-batch', '-'], {input, allowFailure: true})
  if (res.code !== 0 && !opts.allowFailure) throw new Error(batchError(res).replace(/^/, 'bridge: '))
  return {...res, failedAt: res.code === 0 ? 0 : failedCommand(res)}
}
