import {existsSync, readFileSync} from 'node:fs'
import {watchAttachments} from '../../libcni/cache.js'
import {nerdctlHostsStoreDir, syncNerdctlHosts} from '../../netconf/hostsstore.js'
import {errorMessage} from '../../sys/errors.js'
import {networkMembers, type Membership} from '../members.js'
import {DnsServer} from '../../services/dns/server.js'
import {upstreamsFromResolvConf} from '../../services/dns/upstream.js'
import type {Settings} from '../settings.js'
import type {Logger} from '../../sys/log.js'
import {SingleFlight} from './single-flight.js'

/**
 * The daemon's names service (issue: containers find each other by name):
 * one DnsServer whose zones and listeners follow the attachments, and
 * nerdctl's hosts files kept in step. Its truth is the same as the
 * reconcile's (the CNI cache + containerd), read again at every refresh;
 * refreshes come from the cache changing (any client's ADD or DEL, seen
 * through a watch), from containerd's events and from every pass. Refreshes
 * never overlap: one asked for during another runs once after it.
 */
export interface DaemonDnsOptions {
  /** UDP and TCP port on each gateway (53; another only for tests) */
  port: number
  /** where the upstream resolvers are read (the host's /etc/resolv.conf) */
  resolvConf: string
  /** nerdctl's --data-root: its hosts store is kept in step when it exists */
  nerdctlDataRoot: string
  log: Logger
  /** how often listeners that could not bind are tried again (default 1 s) */
  retryMs?: number
}

export class DaemonDns {
  private readonly server: DnsServer
  private readonly served = new Set<string>()
  /** `<network> <address>` -> the reason last logged for not listening there */
  private readonly unbound = new Map<string, string>()
  private readonly flight = new SingleFlight(
    () =>
      this.once().catch((err: unknown) => {
        const msg = errorMessage(err)
        if (msg !== this.lastError) this.opts.log.error({action: 'dns', outcome: 'failed', reason: msg}, `dns refresh failed: ${msg}`)
        this.lastError = msg
      }),
    () => !this.closed,
  )
  private closed = false
  private stopWatch: (() => void) | undefined
  private retry: NodeJS.Timeout | undefined
  private lastError: string | undefined

  constructor(
    private readonly s: Settings,
    private readonly opts: DaemonDnsOptions,
  ) {
    let upstreams: string[] = []
    try {
      upstreams = upstreamsFromResolvConf(readFileSync(opts.resolvConf, 'utf8'))
    } catch (err) {
      opts.log.warn({action: 'dns', outcome: 'no upstream', reason: errorMessage(err)}, `dns: cannot read ${opts.resolvConf}: other names get SERVFAIL`)
    }
    this.server = new DnsServer({port: opts.port, upstreams, log: opts.log})
    opts.log.info({action: 'dns', port: opts.port, upstreams}, `dns: answering on each bridge network's gateways, port ${opts.port}; forwarding to ${upstreams.join(', ') || 'nobody'}`)
  }

  /** Starts following the cache, and the first refresh. */
  start(): Promise<void> {
    this.stopWatch = watchAttachments(this.s.cacheDir, () => void this.refresh())
    return this.refresh()
  }

  /** Reads the attachments again and makes zones, listeners and hosts files follow; never throws. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve()
    return this.flight.run()
  }

  stats(): Record<string, number> {
    return this.server.stats()
  }

  async close(): Promise<void> {
    this.closed = true
    this.stopWatch?.()
    if (this.retry) clearTimeout(this.retry)
    await this.flight.settled()
    await this.server.close()
  }

  private async once(): Promise<void> {
    const m = await networkMembers(this.s)
    if (this.closed) return
    const networks = new Set([...m.members.keys(), ...m.gateways.keys()])
    let missing = 0
    for (const net of networks) {
      this.server.setMembers(net, m.members.get(net) ?? [])
      const addresses = m.gateways.get(net) ?? []
      const failed = await this.server.listen(net, addresses)
      missing += failed.length
      this.logListeners(net, addresses, failed)
      this.served.add(net)
    }
    for (const net of [...this.served]) {
      if (networks.has(net)) continue
      await this.server.removeNetwork(net)
      this.served.delete(net)
      this.logListeners(net, [], [])
    }
    if (this.lastError !== undefined) this.opts.log.info({action: 'dns', outcome: 'recovered'}, 'dns refresh works again')
    this.lastError = undefined
    // a bridge that has no address yet (or an IPv6 one still tentative): try again soon
    if (missing > 0 && !this.retry && !this.closed) {
      this.retry = setTimeout(() => {
        this.retry = undefined
        void this.refresh()
      }, this.opts.retryMs ?? 1000)
      this.retry.unref()
    }
    await this.syncHosts(m)
  }

  /** One log line per change: a listener that cannot bind, and when it binds again. */
  private logListeners(net: string, addresses: string[], failed: {address: string; reason: string}[]): void {
    const now = new Map(failed.map((f) => [`${net} ${f.address}`, f.reason]))
    for (const [key, reason] of now) {
      if (this.unbound.get(key) === reason) continue
      this.unbound.set(key, reason)
      this.opts.log.warn({action: 'dns', network: net, address: key.split(' ')[1], outcome: 'not listening', reason}, `dns: cannot listen on ${key.split(' ')[1]} for ${net}: ${reason}`)
    }
    for (const key of [...this.unbound.keys()]) {
      if (!key.startsWith(`${net} `) || now.has(key)) continue
      this.unbound.delete(key)
      const address = key.split(' ')[1]!
      if (addresses.includes(address)) this.opts.log.info({action: 'dns', network: net, address, outcome: 'listening'}, `dns: listening on ${address} for ${net}`)
    }
  }

  private async syncHosts(m: Membership): Promise<void> {
    const store = nerdctlHostsStoreDir(this.opts.nerdctlDataRoot, this.s.address)
    if (!existsSync(store)) return
    const members = new Map([...m.members].map(([net, list]) => [net, list.map((x) => ({namespace: x.namespace, id: x.id, names: x.hostNames, ips: [...x.ipv4, ...x.ipv6]}))]))
    const r = await syncNerdctlHosts(store, members)
    for (const c of r.updated) this.opts.log.info({action: 'hosts', container: c, outcome: 'ok'}, `hosts file of ${c} updated`)
    for (const f of r.failed) this.opts.log.error({action: 'hosts', container: f.container, outcome: 'failed', reason: f.reason}, `hosts file of ${f.container}: ${f.reason}`)
  }
}
