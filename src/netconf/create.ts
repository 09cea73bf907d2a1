import {mkdirSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {writeFileAtomic} from '../sys/atomic.js'
import {CtrnetError, errorMessage} from '../sys/errors.js'
import {claimBridge} from './bridges.js'
import {BRIDGE_NAME_OPTION, type CreateOptions, defaultBridgeOptions, kvMap, renderNetwork, validateCreateOptions} from './render.js'
import {validateConflist} from './schema.js'
import {validateFirewallBackendChoice, withFirewallBackend} from './firewall-backend.js'
import {confSubnets, hostUsedSubnets, type Cidr} from './subnet.js'
import {type NetworkEntry, type SkipHandler, checkNamespace, configPathFor, findDefaultNetwork, listNetworks, withStoreLock} from './store.js'

/**
 * The write side of the network store (store.ts): `network create` and the
 * default network that `network connect bridge` creates when missing.
 */

function exists(path: string): boolean {
  try {
    statSync(path)
    return true
  } catch {
    return false
  }
}

/** Writes a conflist atomically (0644). Call under the store lock. Refuses to replace a file. */
function writeNetworkFile(what: string, file: string, text: string): void {
  if (exists(file)) throw new CtrnetError(what, `${file} already exists`)
  try {
    mkdirSync(join(file, '..'), {recursive: true, mode: 0o755})
    writeFileAtomic(file, text, 0o644)
  } catch (err) {
    throw new CtrnetError(what, `cannot write ${file}: ${errorMessage(err)}`)
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
  validateCreateOptions(opts)
  const what = `network create ${opts.name}`
  validateFirewallBackendChoice(what, opts.firewallBackend)
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
    const rendered = withFirewallBackend(renderNetwork(opts, {usedSubnets: usedSubnets(nets)}), opts.firewallBackend)
    await validateConflist(what, rendered.conf)
    const file = configPathFor(dir, namespace, opts.name)
    // Bridge devices are host-wide: refuse one any other config names (every namespace folder),
    // and record the ones ctrnet creates under a chosen name, so rm deletes only what it owns.
    const explicitName = opts.driver === 'bridge' && kvMap(opts.options).has(BRIDGE_NAME_OPTION)
    const claim = claimBridge(dir, what, {name: opts.name, id: rendered.id, conf: rendered.conf, file, explicitName})
    writeNetworkFile(what, file, rendered.text)
    const warnings = [...rendered.warnings, ...claim.warnings, ...claim.commit()]
    return {id: rendered.id, name: opts.name, file, created: true, warnings}
  })
}

/** Subnets in use: host interfaces and on-link routes, and every visible network's. */
function usedSubnets(nets: NetworkEntry[]): Cidr[] {
  const used = hostUsedSubnets()
  for (const n of nets) used.push(...confSubnets(n.conf))
  return used
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
  const opts = defaultBridgeOptions()
  const what = `network create ${opts.name}`
  return withStoreLock(dir, what, async () => {
    const nets = listNetworks(dir, namespace, onSkip)
    const again = findDefaultNetwork(nets)
    if (again) return {id: again.nerdctlID ?? '', name: again.name, file: again.file, created: false, warnings: []}
    // Same path as create, but we already hold the lock: render and write here (firewall backend: auto).
    const rendered = withFirewallBackend(renderNetwork(opts, {usedSubnets: usedSubnets(nets)}))
    await validateConflist(what, rendered.conf)
    const file = configPathFor(dir, namespace, opts.name)
    writeNetworkFile(what, file, rendered.text)
    return {id: rendered.id, name: opts.name, file, created: true, warnings: rendered.warnings}
  })
}
