import {join} from 'node:path'
import {listAttachments} from '../libcni/cache.js'
import {makeRuntime} from './cni.js'
import {portConflict} from './ports.js'
import type {Settings} from './settings.js'
import {type AttachFlags, type AttachRequest, attachRequestOfFlags} from '../netconf/attach-request.js'
import {ensureDefaultBridgeNetwork} from '../netconf/create.js'
import {
  addToNetworksLabel,
  CTRNET_NETWORKS_LABEL,
  CTRNET_PUBLISH_LABEL,
  formatNetworksLabel,
  intentOf,
  isCniNetworkList,
  NETWORKS_LABEL,
  parseNetworksLabel,
  removeFromNetworksLabel,
} from '../netconf/labels.js'
import {findDefaultNetwork, listNetworks, NoSuchNetwork} from '../netconf/store.js'
import {findNetworkConf, loadConfFile, type LoadedConf} from '../libcni/loader.js'
import {typedRuntimeConf} from '../libcni/conf.js'
import * as validate from '../libcni/validate.js'
import type {CniRuntime, NetList, RuntimeConf} from '../libcni/runtime.js'
import type {CniResult, NetConfList} from '../plugins/types.js'
import {GONE_NETNS, interfacesOf, netnsForDel} from '../kernel/netns.js'
import {CtrnetError, errorMessage} from '../sys/errors.js'
import {FileLock, withLock} from '../sys/flock.js'
import type {ContainerInfo, ContainerdClient} from '../containerd/client.js'
import {isLive} from '../containerd/tasks.js'
import {cniContainerId, displayName, resolveContainer, runningNetns, specHostname, withContainerd} from './containers.js'

/**
 * `network connect` / `network disconnect`: attach a running containerd
 * container to a CNI network the way nerdctl's OCI hook does (CNI container
 * id `<namespace>-<id>`, ifnames ethN, CNI_ARGS IgnoreUnknown=1, ...), and
 * record it in the container's `nerdctl/networks` label.
 */

export interface ConnectResult {
  containerId: string
  name: string
  network: string
  ifName: string
  result: CniResult
}

export interface DisconnectRequest {
  network: string
  container: string
}

const lockFor = (cacheDir: string, cid: string) => join(cacheDir, 'ctrnet', 'locks', `container-${cid}.lock`)

/** Runs fn under the lock of one CNI container id: every change to a container's attachments is serialised by it. */
export function withContainerLock<T>(s: Pick<Settings, 'cacheDir'>, cid: string, fn: () => Promise<T>): Promise<T> {
  return withLock(lockFor(s.cacheDir, cid), fn)
}

/** The network's conflist; `bridge` is nerdctl's default network, created when missing. */
export async function loadAttachNetwork(s: Settings, name: string, create: boolean): Promise<LoadedConf | undefined> {
  if (name === 'bridge') {
    if (create) {
      const made = await ensureDefaultBridgeNetwork(s.confDir, s.namespace)
      return loadConfFile(made.file)
    }
    const found = findDefaultNetwork(listNetworks(s.confDir, s.namespace))
    return found ? {file: found.file, bytes: found.bytes, conf: found.conf} : undefined
  }
  return findNetworkConf(s.confDir, s.namespace, name)
}

function declares(conf: NetConfList, cap: string): boolean {
  return conf.plugins.some((p) => p.capabilities?.[cap] === true)
}

/** Rewrites the `nerdctl/networks` label (removes it when the list is empty). */
async function writeNetworksLabel(client: ContainerdClient, id: string, nets: string[]): Promise<void> {
  await client.setLabel(id, NETWORKS_LABEL, nets.length ? formatNetworksLabel(nets) : undefined)
}

export interface Attached {
  netName: string
  ifName: string
  rt: RuntimeConf
  result: CniResult
}

export interface AttachOptions {
  /** names the action in errors (default `network connect`) */
  what?: string
  /**
   * What an entry of this network in the task's netns means: `refuse` (the
   * default: the container is already connected), or `resume` (the
   * daemon's: a finished entry was attached since its plan, so nothing is
   * done; a journal entry is an ADD that was killed, undone first, in that
   * netns, so that what it made inside goes too).
   */
  existing?: 'refuse' | 'resume'
}

/**
 * The one way ctrnet attaches a network to a running container (`network
 * connect` and the daemon): CNI container id `<namespace>-<id>` of
 * s.namespace, the netns of its task `at` (runningNetns), the requested
 * interface name or the free ethN, nerdctl's CNI_ARGS. A leftover
 * attachment of an earlier task is released first (never entering its
 * netns). The caller holds the container's lock (withContainerLock); `req`
 * was parsed at its edge, so the runtime takes it as typed. Undefined when
 * `resume` found the network attached.
 */
export async function attachNetwork(
  s: Settings,
  runtime: CniRuntime,
  c: ContainerInfo,
  at: {pid: number; netns: string},
  net: LoadedConf,
  req: AttachRequest,
  opts: AttachOptions = {},
): Promise<Attached | undefined> {
  const what = opts.what ?? 'network connect'
  const name = displayName(c)
  const cid = cniContainerId(s.namespace, c.id)
  const {pid, netns} = at

  const netName = net.conf.name
  if (req.publish.length && !declares(net.conf, 'portMappings')) {
    throw new CtrnetError(`network ${netName}`, 'has no plugin for port mappings (-p needs portmap; internal networks have none)')
  }
  if (req.ip6 && !declares(net.conf, 'ips')) {
    throw new CtrnetError(`network ${netName}`, 'does not take requested IPv6 addresses (--ip6 needs a network created with --ipv6)')
  }

  // a published host port is one attachment's: checked, and held from the journal entry on, under one
  // host-wide lock, so that two ADDs (daemon, connect) never both take it
  const ports = req.publish.length ? await FileLock.acquire(join(s.cacheDir, 'ctrnet', 'locks', 'ports.lock')) : undefined
  try {
    // one read of the cache and journal: under the container's lock (its own entries) and the ports' lock (everyone's ports)
    const all = listAttachments(s.cacheDir)
    const mine = all.filter((a) => a.containerId === cid && a.networkName === netName)
    const here = mine.filter((a) => a.netns === netns)
    if (here.length > 0) {
      if (opts.existing !== 'resume') throw new CtrnetError(`container ${name}`, `is already connected to network ${netName} (as ${here[0]!.ifName})`)
      if (here.some((a) => !a.pending)) return undefined // attached since the plan
    }
    // A journal entry in this netns (resume) is an ADD that was killed: undone in that netns. An
    // entry of an earlier task of this container is released without entering its netns.
    for (const a of mine) await runtime.delNetworkList(net, {containerId: cid, ifName: a.ifName, netns: a.netns === netns ? netns : GONE_NETNS})
    const left = all.filter((a) => !mine.includes(a))
    const present = interfacesOf(pid)
    const used = new Set([...present, ...left.filter((a) => a.containerId === cid && a.netns === netns).map((a) => a.ifName)])
    let ifName = req.ifname
    if (ifName === undefined) {
      let n = 0
      while (used.has(`eth${n}`)) n++
      ifName = `eth${n}`
    } else if (used.has(ifName)) {
      throw new CtrnetError(`container ${name}`, `already has an interface ${ifName}`)
    }

    const taken = ports && portConflict(req.publish, left, {containerId: cid, netns})
    if (taken) {
      const {mapping: m, holder: h} = taken
      const port = `${m.hostIP ? `${m.hostIP.includes(':') ? `[${m.hostIP}]` : m.hostIP}:` : ''}${m.hostPort}/${m.protocol}`
      throw new CtrnetError(`${what} ${netName} ${name}`, `host port ${port} is already published by ${h.containerId} on network ${h.networkName}`)
    }
    let rt: RuntimeConf
    let result: CniResult
    try {
      const args: Array<[string, string]> = [['IgnoreUnknown', '1']]
      if (req.ip) args.push(['IP', req.ip])
      // the hostname comes from the container's spec, which any client writes: parsed here, as CNI_ARGS
      const hostname = specHostname(c)
      if (hostname) {
        validate.cniArgs([['NERDCTL_CNI_DHCP_HOSTNAME', hostname]])
        args.push(['NERDCTL_CNI_DHCP_HOSTNAME', hostname])
      }
      const capabilityArgs: Record<string, unknown> = {}
      if (req.publish.length) capabilityArgs.portMappings = req.publish
      if (req.ip6) capabilityArgs.ips = [req.ip6]
      rt = typedRuntimeConf({containerId: cid, netns, ifName, args, capabilityArgs})
      result = await runtime.addNetworkList(net, rt, {journaled: () => ports?.release()})
    } catch (err) {
      throw new CtrnetError(`${what} ${netName} ${name}`, errorMessage(err))
    }
    return {netName, ifName, rt, result}
  } finally {
    ports?.release()
  }
}

/** `network connect`: the flags are parsed here, once, into the request every later step takes. */
export async function connectContainer(s: Settings, network: string, container: string, flags: AttachFlags): Promise<ConnectResult> {
  const req = attachRequestOfFlags(network, flags)
  const runtime = makeRuntime(s)
  return withContainerd(s, async (client) => {
    const found = await resolveContainer(client, container)
    const cid = cniContainerId(s.namespace, found.id)
    return withContainerLock(s, cid, async () => {
      // Fresh state under the lock: a concurrent connect may have changed the labels (every change of
      // ctrnet's to them is made under this lock, so they are still these after the attach)
      const c: ContainerInfo = (await client.getContainer(found.id)) ?? found
      const name = displayName(c)
      const nets = parseNetworksLabel(c.labels)
      if (nets === undefined) throw new CtrnetError(`container ${name}`, `its ${NETWORKS_LABEL} label is not a JSON list of names: ${c.labels[NETWORKS_LABEL]}`)
      if (nets.length > 0 && !isCniNetworkList(nets) && !(nets.length === 1 && nets[0] === 'none')) {
        throw new CtrnetError(`container ${name}`, `it uses network mode ${nets.join(',')}; only containers with their own network namespace can be connected`)
      }
      const intent = intentOf(c.labels)
      if (intent && 'refused' in intent) throw new CtrnetError(`container ${name}`, `its labels do not parse (${intent.refused}); fix or remove them first`)
      const at = runningNetns(c, await client.getTask(c.id))
      const net = await loadAttachNetwork(s, req.network, true)
      if (!net) throw new NoSuchNetwork(req.network, s)
      const {netName, ifName, rt, result} = (await attachNetwork(s, runtime, c, at, net, req))!
      try {
        // the intent the daemon follows, so the network survives restarts of the task
        const before = c.labels[CTRNET_NETWORKS_LABEL]
        await client.setLabel(c.id, CTRNET_NETWORKS_LABEL, addToNetworksLabel(before, {...req, network: netName}))
        const next = isCniNetworkList(nets) ? [...nets] : []
        if (!next.includes(netName)) next.push(netName)
        try {
          await writeNetworksLabel(client, c.id, next)
        } catch (err) {
          await client.setLabel(c.id, CTRNET_NETWORKS_LABEL, before).catch(() => undefined)
          throw err
        }
      } catch (err) {
        // Leave nothing behind: undo the attachment.
        try {
          await runtime.delNetworkList(net, rt)
        } catch (undoErr) {
          throw new CtrnetError(`network connect ${netName} ${name}`, `${errorMessage(err)}; undoing the attachment also failed: ${errorMessage(undoErr)}`)
        }
        throw err
      }
      return {containerId: c.id, name, network: netName, ifName, result}
    })
  })
}

export async function disconnectContainer(s: Settings, req: DisconnectRequest): Promise<{containerId: string; removed: string[]}> {
  const runtime = makeRuntime(s)
  return withContainerd(s, async (client) => {
    const net = await loadAttachNetwork(s, req.network, false)
    const netName = net?.conf.name ?? req.network

    let container: ContainerInfo | undefined
    let cid: string
    try {
      container = await resolveContainer(client, req.container)
      cid = cniContainerId(s.namespace, container.id)
    } catch (err) {
      // The container may be gone while its attachment is still cached.
      if (!(err instanceof CtrnetError) || !err.what.startsWith('no such container')) throw err
      const prefix = cniContainerId(s.namespace, req.container)
      const cids = [...new Set(listAttachments(s.cacheDir, {network: netName}).map((a) => a.containerId))]
      const exact = cids.filter((c) => c === prefix)
      const matches = exact.length ? exact : cids.filter((c) => c.startsWith(prefix))
      if (matches.length !== 1) throw err
      cid = matches[0]
    }
    const id = container?.id ?? cid.slice(s.namespace.length + 1)
    const name = container ? displayName(container) : id

    return withContainerLock(s, cid, async () => {
      const c = container ? await client.getContainer(container.id) : undefined
      const nets = c ? parseNetworksLabel(c.labels) ?? [] : []
      const entries = listAttachments(s.cacheDir, {network: netName, containerId: cid})
      const intent = removeFromNetworksLabel(c?.labels[CTRNET_NETWORKS_LABEL], netName)
      if (entries.length === 0 && !nets.includes(netName) && !intent) {
        if (!net) throw new NoSuchNetwork(req.network, s)
        throw new CtrnetError(`container ${name}`, `is not connected to network ${netName}`)
      }
      const task = c ? await client.getTask(c.id) : undefined
      const livePid = task && isLive(task) && task.pid ? task.pid : undefined
      const removed: string[] = []
      for (const a of entries) {
        // the network file may be gone: then the config the ADD cached
        const conf: NetList | undefined = net ?? a.net
        if (!conf) throw new CtrnetError(`network disconnect ${netName} ${name}`, `no config for the attachment ${a.ifName} (network file and cache entry unreadable)`)
        // never the netns of a dead task (GONE_NETNS then)
        const netns = netnsForDel(a.netns, livePid)
        try {
          await runtime.delNetworkList(conf, {containerId: cid, ifName: a.ifName, netns})
        } catch (err) {
          throw new CtrnetError(`network disconnect ${netName} ${name}`, errorMessage(err))
        }
        removed.push(a.ifName)
      }
      if (c && intent) {
        await client.setLabel(c.id, CTRNET_NETWORKS_LABEL, intent.value)
        // ctrnet/publish belongs to the first network
        if (intent.first && c.labels[CTRNET_PUBLISH_LABEL] !== undefined) await client.setLabel(c.id, CTRNET_PUBLISH_LABEL, undefined)
      }
      if (c && nets.includes(netName)) await writeNetworksLabel(client, c.id, nets.filter((n) => n !== netName))
      return {containerId: id, removed}
    })
  })
}
