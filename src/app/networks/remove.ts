import {CtrnetError, errorMessage} from '../../sys/errors.js'
import {bridgeNamesOf, bridgeUsers, describeUser, forgetOwnedBridge, ownsBridge} from '../../netconf/bridges.js'
import {DEFAULT_NETWORK_NAME} from '../../netconf/names.js'
import {type NetworkEntry, removeNetworkFile, withStoreLock} from '../../netconf/store.js'
import {deleteLinkIfExists, isBridge, linkExists} from '../../kernel/ip/link.js'
import {FIREWALL_BACKENDS, backendInstalled, firewallBackend} from '../../kernel/netfilter/backends/index.js'
import {isOverlayType, overlayNetworkOf} from '../../plugins/overlay/config.js'
import {leaveOverlay} from '../../services/overlay/host.js'
import {networkUsers, type ContainerdOpts} from '../usage.js'
import {PSEUDO_NETWORKS, type Warn, matchNetworks, single, visible} from './common.js'

/**
 * `network rm` and `network prune` (nerdctl's remove.go, prune.go): a network
 * in use by a running or paused container (app/usage.ts) stays.
 */

type RemoveSettings = ContainerdOpts & {confDir: string; iptablesLockPath?: string}

/**
 * Deletes the file and then the bridge link (nerdctl's fsRemove + clean), under
 * the lock. The link goes only when ctrnet/nerdctl created it for this network
 * (netconf/bridges.ts: br-<id>, nerdctl0, or a name recorded at create) and no
 * other config (any namespace folder) names it; otherwise it stays, with one
 * warning line when it exists.
 */
async function removeOne(s: RemoveSettings, n: NetworkEntry, what: string, warn: Warn): Promise<void> {
  const dir = s.confDir
  const devs = [...new Set(bridgeNamesOf(n.conf))]
  const owned = devs.map((dev) => ownsBridge(dir, n, dev))
  const shared = devs.map((dev) => bridgeUsers(dir, dev, n.file))
  removeNetworkFile(what, n.file)
  const overlay = isOverlayType(n.conf.plugins[0]?.type)
  if (overlay) await leaveOverlayNetwork(n, what, warn)
  // the firewall plugin's rules of each bridge no other network names (isolation, exposure) go with the network
  if (n.conf.plugins.some((p) => p?.type === 'firewall')) {
    const overlayBridge = overlay ? overlayBridgeOf(n) : undefined
    const gone = [...devs.filter((_, i) => shared[i]!.length === 0), ...(overlayBridge && !devs.includes(overlayBridge) ? [overlayBridge] : [])]
    for (const dev of gone) await removeBridgeRules(s, n, dev, warn)
  }
  if (devs.length === 0) return
  const net = JSON.stringify(n.name)
  for (const [i, dev] of devs.entries()) {
    if (n.nerdctlID) forgetOwnedBridge(dir, n.nerdctlID, dev)
    if (!linkExists(dev)) continue
    const left = `network ${net}: bridge ${JSON.stringify(dev)}`
    if (!owned[i]) {
      warn(`${left} was not created by ctrnet for this network; left in place`)
      continue
    }
    const others = shared[i]!
    if (others.length > 0) {
      warn(`${left} is also used by ${describeUser(others[0]!)}; left in place`)
      continue
    }
    if (!isBridge(dev)) {
      warn(`${left} is not a bridge; left in place`)
      continue
    }
    try {
      await deleteLinkIfExists(dev)
    } catch (err) {
      throw new CtrnetError(what, `failed to remove network interface ${dev}: ${errorMessage(err)}`)
    }
  }
}

/**
 * The rules of one bridge in every firewall backend installed here (the
 * seam's removeBridge): the network may have been attached through either
 * (its conflist's choice, or the default rule of the host at the time); a
 * failure is a warning (the file is gone).
 */
async function removeBridgeRules(s: RemoveSettings, n: NetworkEntry, dev: string, warn: Warn): Promise<void> {
  for (const name of FIREWALL_BACKENDS.filter((b) => backendInstalled(b))) {
    try {
      await firewallBackend(name).removeBridge(dev, {lockPath: s.iptablesLockPath})
    } catch (err) {
      warn(`network ${JSON.stringify(n.name)}: the ${name} rules of bridge ${JSON.stringify(dev)} are left: ${errorMessage(err)}`)
    }
  }
}

function overlayBridgeOf(n: NetworkEntry): string | undefined {
  try {
    return overlayNetworkOf(n.conf)?.bridge
  } catch {
    return undefined
  }
}

/**
 * An overlay network on this host: its slice goes back to etcd, its VXLAN
 * device and the bridge its plugin delegated to (ctrov<vni>, ctrnet's own)
 * are removed.
 */
async function leaveOverlayNetwork(n: NetworkEntry, what: string, warn: Warn): Promise<void> {
  let o
  try {
    o = overlayNetworkOf(n.conf)!
  } catch (err) {
    warn(`network ${JSON.stringify(n.name)}: ${errorMessage(err)}; its VXLAN device and etcd record are left`)
    return
  }
  try {
    for (const w of await leaveOverlay(o)) warn(w)
    if (isBridge(o.bridge)) await deleteLinkIfExists(o.bridge)
  } catch (err) {
    throw new CtrnetError(what, `failed to leave the overlay: ${errorMessage(err)}`)
  }
}

function goQuoteList(items: string[]): string {
  return '[' + items.map((s) => JSON.stringify(s)).join(' ') + ']'
}

export interface RemoveResult {
  removed: string[]
  errors: string[]
}

/**
 * `network rm`: each request by name or ID prefix. Refuses host/none, the
 * default bridge, files without nerdctlID, and networks in use by a running or
 * paused container. Prints (returns) each removed request as typed.
 */
export async function removeNetworks(s: RemoveSettings, reqs: string[], warn: Warn): Promise<RemoveResult> {
  return withStoreLock(s.confDir, 'network rm', async () => {
    const {matches, errors} = matchNetworks(visible(s, warn), reqs, false)
    const removed: string[] = []
    for (const m of matches) {
      const n = single(m, errors)
      if (!n) continue
      if (n.name === DEFAULT_NETWORK_NAME) {
        errors.push('cannot remove pre-defined network bridge')
        continue
      }
      if (n.file === '') {
        errors.push(`${m.req} is a pre-defined network and cannot be removed`)
        continue
      }
      if (n.nerdctlID === undefined) {
        errors.push(`${m.req} is managed outside nerdctl and cannot be removed`)
        continue
      }
      const users = await networkUsers(s, n.name)
      if (users.length > 0) {
        errors.push(`network ${JSON.stringify(m.req)} is in use by container ${goQuoteList(users.map((u) => u.id))}`)
        continue
      }
      try {
        await removeOne(s, n, `network rm ${m.req}`, warn)
        removed.push(m.req)
      } catch (err) {
        errors.push(err instanceof CtrnetError ? err.why : errorMessage(err))
      }
    }
    return {removed, errors}
  })
}

/** `network prune`: every unused nerdctl-made network except host, none and bridge. */
export async function pruneNetworks(s: RemoveSettings, warn: Warn): Promise<RemoveResult> {
  return withStoreLock(s.confDir, 'network prune', async () => {
    const removed: string[] = []
    const errors: string[] = []
    for (const n of visible(s, warn)) {
      if ([...PSEUDO_NETWORKS, DEFAULT_NETWORK_NAME].some((k) => k.toLowerCase() === n.name.toLowerCase())) continue
      if (n.nerdctlID === undefined || n.file === '') continue
      if ((await networkUsers(s, n.name)).length > 0) continue
      try {
        await removeOne(s, n, `network prune`, warn)
        removed.push(n.name)
      } catch (err) {
        errors.push(`failed to remove network ${n.name}: ${err instanceof CtrnetError ? err.why : errorMessage(err)}`)
      }
    }
    return {removed, errors}
  })
}
