import {mkdirSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {CtrnetError, errorMessage} from '../sys/errors.js'
import {withLock} from '../sys/flock.js'
import {listConfFiles, loadConfFile} from '../libcni/loader.js'
import type {NetConfList} from '../plugins/types.js'
import {DEFAULT_NETWORK_LABEL} from './labels.js'
import {DEFAULT_NETWORK_NAME} from './names.js'

/**
 * The network store: nerdctl's config dir layout (pkg/netutil/store.go).
 * - visible networks for a namespace: config files in <dir> and <dir>/<namespace>,
 *   sorted by full path (nerdctl's cniLoad sorts the combined list);
 * - `bridge` lives at <dir>/nerdctl-bridge.conflist, every other network at
 *   <dir>/<namespace>/nerdctl-<name>.conflist;
 * - every mutation runs under an exclusive flock(2) on <dir>/.nerdctl.lock (0600),
 *   the lock nerdctl takes; files are written atomically (temp + rename), 0644.
 * This file reads the store, locks it and removes files; create.ts writes.
 */

export const LOCK_FILE = '.nerdctl.lock'

export interface NetworkEntry {
  name: string
  file: string
  bytes: Buffer
  conf: NetConfList
  /** nerdctlID from the file, when it has one (made by nerdctl or ctrnet) */
  nerdctlID?: string
  nerdctlLabels?: Record<string, string>
}

export type SkipHandler = (file: string, err: Error) => void

/** containerd's namespace rule; also keeps the namespace a single path component. */
const NAMESPACE_PATTERN = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/

export function checkNamespace(namespace: string): void {
  if (namespace.length > 76 || !NAMESPACE_PATTERN.test(namespace)) {
    throw new CtrnetError('namespace', `invalid containerd namespace ${JSON.stringify(namespace)}`)
  }
}

export function lockPath(dir: string): string {
  return join(dir, LOCK_FILE)
}

/** Where nerdctl keeps the conflist of a network it creates. */
export function configPathFor(dir: string, namespace: string, name: string): string {
  if (name === DEFAULT_NETWORK_NAME) return join(dir, `nerdctl-${name}.conflist`)
  checkNamespace(namespace)
  return join(dir, namespace, `nerdctl-${name}.conflist`)
}

/** nerdctlIDLabels: both come from one unmarshal; a wrong type in either drops both. */
function idAndLabels(conf: NetConfList): {nerdctlID?: string; nerdctlLabels?: Record<string, string>} {
  const id = conf.nerdctlID
  const labels = conf.nerdctlLabels
  if (id !== undefined && id !== null && typeof id !== 'string') return {}
  if (labels !== undefined && labels !== null) {
    if (typeof labels !== 'object' || Array.isArray(labels)) return {}
    if (!Object.values(labels).every((v) => typeof v === 'string')) return {}
  }
  return {
    nerdctlID: typeof id === 'string' ? id : undefined,
    nerdctlLabels: labels && typeof labels === 'object' ? (labels as Record<string, string>) : undefined,
  }
}

/**
 * The networks visible to a namespace, sorted by full file path. A file that
 * cannot be read or parsed is skipped and reported through onSkip.
 */
export function listNetworks(dir: string, namespace: string, onSkip?: SkipHandler): NetworkEntry[] {
  checkNamespace(namespace)
  let files: string[]
  try {
    files = listConfFiles(dir, namespace)
  } catch (err) {
    throw new CtrnetError(`reading ${dir}`, errorMessage(err))
  }
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const out: NetworkEntry[] = []
  for (const file of files) {
    try {
      const {bytes, conf} = loadConfFile(file)
      out.push({name: conf.name, file, bytes, conf, ...idAndLabels(conf)})
    } catch (err) {
      onSkip?.(file, err as Error)
    }
  }
  return out
}

/** Runs fn under the exclusive store lock (<dir>/.nerdctl.lock, 0600). */
export async function withStoreLock<T>(dir: string, what: string, fn: () => Promise<T> | T): Promise<T> {
  try {
    mkdirSync(dir, {recursive: true, mode: 0o755})
  } catch (err) {
    throw new CtrnetError(what, `cannot create config dir ${dir}: ${errorMessage(err)}`)
  }
  let locked = false
  try {
    return await withLock(
      lockPath(dir),
      () => {
        locked = true
        return fn()
      },
      {mode: 0o600},
    )
  } catch (err) {
    if (locked || err instanceof CtrnetError) throw err
    throw new CtrnetError(what, `cannot lock ${lockPath(dir)}: ${errorMessage(err)}`)
  }
}

/** Removes a network's file. Call under the store lock. */
export function removeNetworkFile(what: string, file: string): void {
  try {
    rmSync(file, {force: true})
  } catch (err) {
    throw new CtrnetError(what, `cannot remove ${file}: ${errorMessage(err)}`)
  }
}

/** nerdctl's GetDefaultNetworkConfig: a network labelled nerdctl/default-network, else one named bridge. */
export function findDefaultNetwork(nets: NetworkEntry[]): NetworkEntry | undefined {
  return nets.find((n) => n.nerdctlLabels && DEFAULT_NETWORK_LABEL in n.nerdctlLabels) ?? nets.find((n) => n.name === DEFAULT_NETWORK_NAME)
}

/**
 * The one refusal for a network name that names nothing: in the conflist
 * folder of the namespace, and (orCache) not in the CNI cache either, whose
 * entries keep the config their ADD ran with.
 */
export class NoSuchNetwork extends CtrnetError {
  constructor(name: string, where: {confDir: string; namespace: string}, orCache = false) {
    super(`no such network: ${name}`, `network "${name}" not found in ${where.confDir} (namespace ${where.namespace})${orCache ? ' nor in the CNI cache' : ''}`)
  }
}
