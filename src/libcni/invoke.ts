import {accessSync, constants, statSync} from 'node:fs'
import {join} from 'node:path'
import {run} from '../sys/exec.js'
import {formatCniArgs} from './args.js'
import {CNI_ERR, CniError, type CniCommand, type CniResult} from '../plugins/types.js'
import {toInternalResult} from './version.js'

const TYPE_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

/** Finds a plugin binary by type in the CNI_PATH directories, as libcni's FindInPath. */
export function findInPath(type: string, paths: string[]): string {
  if (!TYPE_RE.test(type) || type === '.' || type === '..') {
    throw new CniError(CNI_ERR.INVALID_NETCONF, 'invalid plugin type', JSON.stringify(type))
  }
  for (const dir of paths) {
    if (!dir) continue
    const p = join(dir, type)
    try {
      if (!statSync(p).isFile()) continue
      accessSync(p, constants.X_OK)
      return p
    } catch {
      /* next dir */
    }
  }
  throw new CniError(CNI_ERR.INVALID_NETCONF, `failed to find plugin "${type}" in path`, `[${paths.join(' ')}]`)
}

export interface ExecArgs {
  command: CniCommand
  containerId: string
  netns: string
  ifName: string
  args: Array<[string, string]>
  cniPath: string[]
}

export const DEFAULT_EXEC_TIMEOUT_MS = 120_000

/**
 * Executes an external plugin by the CNI protocol: CNI_* in the environment,
 * the config on stdin, a result or an error object on stdout. A plugin that
 * hangs is killed after timeoutMs; garbage on stdout is a decoding error.
 */
export async function execPlugin(
  pluginPath: string,
  stdin: string,
  a: ExecArgs,
  timeoutMs = DEFAULT_EXEC_TIMEOUT_MS,
): Promise<CniResult | undefined> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CNI_COMMAND: a.command,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netns,
    CNI_IFNAME: a.ifName,
    CNI_ARGS: formatCniArgs(a.args),
    CNI_PATH: a.cniPath.join(':'),
  }
  let res
  try {
    res = await run(pluginPath, [], {input: stdin, env, timeoutMs, allowFailure: true, maxStdout: 16 << 20})
  } catch (err) {
    throw new CniError(CNI_ERR.INTERNAL, `plugin ${pluginPath}`, (err as Error).message)
  }
  const out = res.stdout.trim()
  if (res.code !== 0) {
    let parsed: Record<string, unknown> | undefined
    try {
      parsed = JSON.parse(out) as Record<string, unknown>
    } catch {
      /* not an error object */
    }
    if (parsed && typeof parsed.code === 'number' && typeof parsed.msg === 'string') {
      throw new CniError(parsed.code, parsed.msg, typeof parsed.details === 'string' ? parsed.details : '')
    }
    const why = res.stderr.trim() || out || `exit status ${res.code}`
    throw new CniError(CNI_ERR.INTERNAL, `netplugin failed`, why.slice(0, 2000))
  }
  if (a.command !== 'ADD' && a.command !== 'VERSION') return undefined
  let raw: unknown
  try {
    raw = JSON.parse(out)
  } catch {
    throw new CniError(CNI_ERR.DECODING_FAILURE, 'failed to decode plugin result', `not JSON: ${JSON.stringify(out.slice(0, 200))}`)
  }
  if (a.command === 'VERSION') return raw as CniResult
  return toInternalResult(raw)
}
