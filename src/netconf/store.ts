import {mkdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {CtrnetError, errorMessage} from '../sys/errors.js'
import {withLock} from '../sys/flock.js'
import {listConfFiles, loadConfFile} from '../libcni/loader.js'
import type {NetConfList} from '../plugins/types.js'
import type {CreateOptions} from './render.js'

/**
 * The network store: nerdctl's config dir layout (pkg/netutil/store.go).
 * - visible networks for a namespace: config files in <dir> and <dir>/<namespace>,
 *   sorted by full path (nerdctl's cniLoad sorts the combined list);
 * - `bridge` lives at <dir>/nerdctl-bridge.conflist, every other network at
 *   <dir>/<namespace>/nerdctl-<name>.conflist;
 * - every mutation runs under an exclusive flock(2) on <dir>/.nerdctl.lock (0600),
 *   the lock nerdctl takes; files are written atomically (temp + rename), 0644.
 */

export const LOCK_FILE = '.nerdctl.lock'
export const DEFAULT_NETWORK_NAME = 'bridge'
export const DEFAULT_NETWORK_LABEL = 'nerdctl/default-network'

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

function exists(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}

/** Writes a conflist atomically (0644). Call under the store lock. Refuses to replace a file. */
export async function writeNetworkFile(what: string, file: string, text: string): Promise<void> {
  if (exists(file)) throw new CtrnetError(what, `${file} already exists`)
  const {writeFileAtomic} = await import('../sys/atomic.js')
  try {
    mkdirSync(join(file, '..'), {recursive: true, mode: 0o755})
    writeFileAtomic(file, text, 0o644)
  } catch (err) {
    throw new CtrnetError(what, `cannot write ${file}: ${errorMessage(err)}`)
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

export interface CreatedNetwork {
  id: string
  name: string
  file: string
  /** false when the network already existed (ignoreExisting) */
  created: boolean
  warnings: string[]
}

/**
 * The whole create, under the lock: look for the name, gather used subnets
 * (host interfaces, on-link routes, every visible network), render, validate
 * against the schema, write. Holding the lock across allocation and write is
 * what makes concurrent creates pick distinct subnets.
 */
export async function createNetworkLocked(
  dir: string,
  namespace: string,
  opts: CreateOptions,
  {ignoreExisting = false, onSkip}: {ignoreExisting?: boolean; onSkip?: SkipHandler} = {},
): Promise<CreatedNetwork> {
  const netconf = await import('./render.js')
  netconf.validateCreateOptions(opts)
  const what = `network create ${opts.name}`
  checkNamespace(namespace)
  return withStoreLock(dir, what, async () => {
    const nets = listNetworks(dir, namespace, onSkip)
    const existing = nets.find((n) => n.name === opts.name)
    if (existing) {
      if (ignoreExisting) {
        return {id: existing.nerdctlID ?? '', name: existing.name, file: existing.file, created: false, warnings: []}
      }
      throw new CtrnetError(what, `network with name ${opts.name} already exists`)
    }
    const subnet = await import('./subnet.js')
    const used = subnet.hostUsedSubnets()
    for (const n of nets) used.push(...subnet.confSubnets(n.conf))
    const rendered = netconf.renderNetwork(opts, {usedSubnets: used})
    const {validateConflist} = await import('./schema.js')
    await validateConflist(what, rendered.conf)
    const file = configPathFor(dir, namespace, opts.name)
    // Bridge devices are host-wide: refuse one any other config names (every namespace folder),
    // and record the ones ctrnet creates under a chosen name, so rm deletes only what it owns.
    const {claimBridge} = await import('./bridges.js')
    const explicitName = opts.driver === 'bridge' && netconf.kvMap(opts.options).has(netconf.BRIDGE_NAME_OPTION)
    const claim = await claimBridge(dir, what, {name: opts.name, id: rendered.id, conf: rendered.conf, file, explicitName})
    await writeNetworkFile(what, file, rendered.text)
    const warnings = [...rendered.warnings, ...claim.warnings, ...(await claim.commit())]
    return {id: rendered.id, name: opts.name, file, created: true, warnings}
  })
}

/** nerdctl's GetDefaultNetworkConfig: a network labelled nerdctl/default-network, else one named bridge. */
export function findDefaultNetwork(nets: NetworkEntry[]): NetworkEntry | undefined {
  return nets.find((n) => n.nerdctlLabels && DEFAULT_NETWORK_LABEL in n.nerdctlLabels) ?? nets.find((n) => n.name === DEFAULT_NETWORK_NAME)
}

/**
 * Writes nerdctl's default network `bridge` (<dir>/nerdctl-bridge.conflist,
 * 10.4.0.0/24, gateway 10.4.0.1, device nerdctl0, label
 * nerdctl/default-network=true) unless a default network already exists.
 * Safe to call concurrently (the check and the write share the lock).
 */
export async function ensureDefaultBridgeNetwork(dir: string, namespace: string, onSkip?: SkipHandler): Promise<CreatedNetwork> {
  const found = findDefaultNetwork(listNetworks(dir, namespace, onSkip))
  if (found) return {id: found.nerdctlID ?? '', name: found.name, file: found.file, created: false, warnings: []}
  const {defaultBridgeOptions} = await import('./render.js')
  const opts = defaultBridgeOptions()
  const what = `network create ${opts.name}`
  return withStoreLock(dir, what, async () => {
    const nets = listNetworks(dir, namespace, onSkip)
    const again = findDefaultNetwork(nets)
    if (again) return {id: again.nerdctlID ?? '', name: again.name, file: again.file, created: false, warnings: []}
    // Same path as create, but we already hold the lock: render and write here.
    const netconf = await import('./render.js')
    const subnet = await import('./subnet.js')
    const used = subnet.hostUsedSubnets()
    for (const n of nets) used.push(...subnet.confSubnets(n.conf))
    const rendered = netconf.renderNetwork(opts, {usedSubnets: used})
    const {validateConflist} = await import('./schema.js')
    await validateConflist(what, rendered.conf)
    const file = configPathFor(dir, namespace, opts.name)
    await writeNetworkFile(what, file, rendered.text)
    return {id: rendered.id, name: opts.name, file, created: true, warnings: rendered.warnings}
  })
}
