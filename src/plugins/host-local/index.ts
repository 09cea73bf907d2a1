import {readFileSync} from 'node:fs'
import {CniError, CNI_ERR, type CniDns, type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import {allocate} from './allocator.js'
import {loadHostLocalConf, parseHostLocal, rangeSetContains, type HostLocalConf} from './config.js'
import {DiskStore, type Lease} from './store.js'

/** host-local IPAM, in-process, with the v1.1.1 on-disk store and order. */

function parseResolvConf(path: string): CniDns {
  const dns: CniDns = {}
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim()
    if (!line || line[0] === '#' || line[0] === ';') continue
    const f = line.split(/\s+/)
    if (f.length < 2) continue
    switch (f[0]) {
      case 'nameserver':
        ;(dns.nameservers ??= []).push(f[1])
        break
      case 'domain':
        dns.domain = f[1]
        break
      case 'search':
        ;(dns.search ??= []).push(...f.slice(1))
        break
      case 'options':
        ;(dns.options ??= []).push(...f.slice(1))
        break
    }
  }
  return dns
}

function ipamFail(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg)
}

/** ADD with a parsed config (its requested IPs were checked against the ranges by the ADD's parse). */
export async function hostLocalAdd(conf: HostLocalConf, containerId: string, ifName: string): Promise<CniResult> {
  // Go omits an empty routes list (omitempty)
  const result: CniResult = {cniVersion: '1.0.0', ips: [], ...(conf.routes.length ? {routes: conf.routes} : {}), dns: {}}
  if (conf.resolvConf) result.dns = parseResolvConf(conf.resolvConf)
  const store = new DiskStore(conf.dataDir, conf.name)
  await store.locked(() => {
    const requested = [...conf.requested]
    const done: number[] = []
    const releaseAll = () => {
      if (done.length) store.releaseById(containerId, ifName)
    }
    conf.ranges.forEach((set, idx) => {
      const k = requested.findIndex((ip) => rangeSetContains(set, ip))
      const want = k >= 0 ? requested.splice(k, 1)[0] : undefined
      try {
        const a = allocate(set, idx, store, containerId, ifName, want)
        result.ips!.push({address: a.address, gateway: a.gateway})
        done.push(idx)
      } catch (e) {
        releaseAll()
        throw ipamFail(`failed to allocate for range ${idx}: ${(e as Error).message}`)
      }
    })
    if (requested.length) {
      releaseAll()
      throw ipamFail(`failed to allocate all requested IPs: ${requested.join(' ')}`)
    }
  }, {sweep: 'temp'})
  return result
}

export async function hostLocalDel(conf: HostLocalConf, containerId: string, ifName: string): Promise<void> {
  const store = new DiskStore(conf.dataDir, conf.name)
  await store.locked(() => store.releaseById(containerId, ifName))
}

/** Leases of a network's store (for GC / listings). */
export async function listLeases(conf: PluginNetConf): Promise<Lease[]> {
  const c = loadHostLocalConf(conf, [['IgnoreUnknown', '1']])
  const store = new DiskStore(c.dataDir, c.name)
  return store.locked(() => store.leases())
}

const plugin: EmbeddedPlugin<HostLocalConf> = {
  parse: parseHostLocal,
  programs: () => ['flock'],
  async add(req: PluginRequest, conf: HostLocalConf): Promise<CniResult> {
    return hostLocalAdd(conf, req.containerId, req.ifName)
  },
  async del(req: PluginRequest, conf: HostLocalConf): Promise<void> {
    await hostLocalDel(conf, req.containerId, req.ifName)
  },
  async check(req: PluginRequest, conf: HostLocalConf): Promise<void> {
    const store = new DiskStore(conf.dataDir, conf.name)
    const found = await store.locked(() => store.findById(req.containerId, req.ifName))
    if (!found) throw ipamFail(`host-local: Failed to find address added by container ${req.containerId}`)
  },
  async gc(req: PluginRequest, conf: HostLocalConf): Promise<void> {
    // CNI 1.1 GC: release leases whose attachment is not in cni.dev/valid-attachments.
    const valid = (req.config['cni.dev/valid-attachments'] ?? []) as Array<{containerID?: string; ifname?: string}>
    const keep = new Set(valid.map((v) => `${v.containerID}\r\n${v.ifname}`))
    const keepIds = new Set(valid.map((v) => String(v.containerID)))
    const store = new DiskStore(conf.dataDir, conf.name)
    await store.locked(() => {
      for (const l of store.leases()) {
        const live = l.ifname ? keep.has(`${l.containerId}\r\n${l.ifname}`) : keepIds.has(l.containerId)
        if (!live) store.releaseById(l.containerId, l.ifname ?? '')
      }
    })
  },
}

export default plugin
