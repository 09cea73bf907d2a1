import {existsSync} from 'node:fs'
import {makeRuntime} from './cni.js'
import {type Attachment, listAttachments, sweepCacheTemps} from '../libcni/cache.js'
import {findNetworkConf} from '../libcni/loader.js'
import type {CniRuntime, GcReport, NetList} from '../libcni/runtime.js'
import {GONE_NETNS, isProcNetnsPath, procNetnsPath} from '../kernel/netns.js'
import type {Settings} from './settings.js'
import {socketExists} from '../containerd/client.js'
import {isLive} from '../containerd/tasks.js'
import {formatNetworksLabel, NETWORKS_LABEL, parseNetworksLabel} from '../netconf/labels.js'
import {NoSuchNetwork} from '../netconf/store.js'
import {withContainerd} from './containers.js'

/**
 * `network gc`: the containerd-aware garbage collection. An attachment is
 * valid while it belongs to a container whose task is RUNNING or PAUSED (in
 * any namespace) and lives in that task's netns, or while it was made in a
 * named netns that still exists (`cni add` into /var/run/netns/x). Every
 * other cached or half-added attachment is DELeted with its cached config,
 * and the network leaves the container's `nerdctl/networks` label when the
 * container still exists.
 */
export interface NetworkGcResult {
  network: string
  report: GcReport
  labelsUpdated: string[]
}

export async function gcNetworks(s: Settings, names: string[], opts: {dryRun?: boolean} = {}): Promise<NetworkGcResult[]> {
  if (!socketExists(s.address)) {
    throw new Error(`cannot reach containerd at ${s.address}: is it running, and are you root? (without containerd, use "ctrnet cni gc")`)
  }
  if (!opts.dryRun) sweepCacheTemps(s.cacheDir)
  const all = listAttachments(s.cacheDir)
  const networks = names.length > 0 ? names : [...new Set(all.map((a) => a.networkName))].sort()

  // containerd's view: live tasks (cni id -> pid) and every container's label
  const live = new Map<string, number>()
  const containers = new Map<string, {namespace: string; id: string; nets: string[]}>()
  await withContainerd(s, async (client) => {
    for (const ns of await client.listNamespaces()) {
      for (const t of await client.listTasks(ns)) {
        if (isLive(t)) live.set(`${ns}-${t.id}`, t.pid)
      }
      for (const c of await client.listContainers([`labels."${NETWORKS_LABEL}"`], ns)) {
        containers.set(`${ns}-${c.id}`, {namespace: ns, id: c.id, nets: parseNetworksLabel(c.labels) ?? []})
      }
    }
  })
  // Valid: made in the netns of the container's live task, or in a named
  // netns that still exists (a /proc path of any other process is not one).
  const isValid = (a: Attachment) => {
    const pid = live.get(a.containerId)
    if (pid !== undefined && a.netns === procNetnsPath(pid)) return true
    return inLiveNamedNetns(a)
  }

  const runtime = makeRuntime(s)
  const results: NetworkGcResult[] = []
  for (const network of networks) {
    const mine = all.filter((a) => a.networkName === network)
    const net = networkForRelease(s, network, mine)
    if (!net) throw new NoSuchNetwork(network, s, true)
    const valid = mine.filter(isValid).map((a) => ({containerId: a.containerId, ifName: a.ifName}))
    const report = await runtime.gcNetworkList(net, valid, opts)
    const labelsUpdated: string[] = []
    if (!opts.dryRun) {
      const gone = new Set(report.removed.map((r) => r.containerId))
      const stillAttached = new Set(valid.map((v) => v.containerId))
      const toUpdate = [...containers.entries()].filter(([cid, c]) => gone.has(cid) && !stillAttached.has(cid) && c.nets.includes(network))
      if (toUpdate.length > 0) {
        await withContainerd(s, async (client) => {
          for (const [cid, c] of toUpdate) {
            const nets = c.nets.filter((n) => n !== network)
            await client.setLabel(c.id, NETWORKS_LABEL, formatNetworksLabel(nets), c.namespace)
            c.nets = nets
            labelsUpdated.push(cid)
          }
        })
      }
    }
    results.push({network, report, labelsUpdated})
  }
  return results
}

/**
 * True when an attachment was made in a named netns that still exists (`cni
 * add` into /var/run/netns/x): it is valid whatever containerd says. A /proc
 * path of a process is never one (its pid may be reused).
 */
export function inLiveNamedNetns(a: Attachment): boolean {
  return !!a.netns && !isProcNetnsPath(a.netns) && existsSync(a.netns)
}

/**
 * The config to release attachments of a network with: its conflist (in the
 * namespace of s), else, when the file is gone, the config their ADDs cached.
 */
export function networkForRelease(s: Pick<Settings, 'confDir' | 'namespace'>, network: string, attachments: Attachment[]): NetList | undefined {
  return findNetworkConf(s.confDir, s.namespace, network) ?? attachments.find((x) => x.configBytes.length > 0)?.net
}

/**
 * Releases one attachment (DEL with its cached config, args and result)
 * without entering its netns: its task is gone or was replaced, and the pid
 * may belong to any process by now. `network gc` does the same through the
 * runtime's GC; the daemon releases attachment by attachment.
 */
export async function releaseAttachment(s: Pick<Settings, 'confDir' | 'namespace'>, runtime: CniRuntime, a: Attachment): Promise<void> {
  const net = networkForRelease(s, a.networkName, [a])
  if (!net) throw new NoSuchNetwork(a.networkName, s, true)
  await runtime.delNetworkList(net, {containerId: a.containerId, ifName: a.ifName, netns: GONE_NETNS})
}
