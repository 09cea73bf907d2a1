import {loadConfFile} from '../../libcni/loader.js'
import {allConfFiles} from '../../netconf/bridges.js'
import {type OverlayConf, etcdClientOf} from '../../services/overlay/config.js'
import {joinOverlay} from '../../services/overlay/host.js'
import {subnetsPrefix} from '../../services/overlay/lease.js'
import {readState} from '../../services/overlay/state.js'
import {overlayNetworkOf} from '../../plugins/overlay/config.js'
import {type EtcdClient, watchPrefix} from '../../sys/etcd.js'
import {errorMessage} from '../../sys/errors.js'
import type {Logger} from '../../sys/log.js'
import {Backoff, sleep} from '../../sys/timing.js'
import type {Settings} from '../settings.js'
import {SingleFlight} from './single-flight.js'

/**
 * The daemon's part of the overlay networks this host has joined (it holds
 * a slice: its state file exists, written by the first ADD): it renews the
 * slice's etcd lease (a third of the TTL, at most every 10 s) and follows the
 * network's subnet keys with an etcd watch, re-syncing the peers' routes,
 * neighbours and FDB entries on every change (so a peer whose lease expired
 * is dropped) and fully after each (re)connection. Failures retry with a
 * capped backoff, one log line per change of state.
 */

const RESCAN_MS = 1000
const RETRY = {firstMs: 500, capMs: 30_000}

/**
 * The overlay networks of every containerd namespace's folder: a host's
 * slice is the host's, whichever namespace's containers use the network.
 */
function overlayConfs(s: Pick<Settings, 'confDir'>): OverlayConf[] {
  const out: OverlayConf[] = []
  for (const file of allConfFiles(s.confDir)) {
    try {
      const o = overlayNetworkOf(loadConfFile(file).conf)
      if (o) out.push(o)
    } catch {
      // unreadable, or a broken entry: the ADD reports it
    }
  }
  return out
}

/** One joined network: a sync runner (one at a time, coalesced), a renew timer and the watch. */
class Member {
  private readonly ac = new AbortController()
  private readonly flight = new SingleFlight(
    () => this.syncOnce(),
    () => !this.ac.signal.aborted,
  )
  private lastError: string | undefined
  private slice: string | undefined
  /** one client (one kept-alive connection) for the renewals, syncs and the watch */
  private readonly client: EtcdClient
  readonly done: Promise<void>

  constructor(
    readonly conf: OverlayConf,
    private readonly log: Logger,
    parent: AbortSignal,
  ) {
    this.client = etcdClientOf(conf)
    parent.addEventListener('abort', () => this.ac.abort(), {once: true})
    this.done = Promise.all([this.renewLoop(), this.watchLoop()]).then(() => this.client.close())
  }

  stop(): void {
    this.ac.abort()
  }

  get stopped(): boolean {
    return this.ac.signal.aborted
  }

  /** Runs a sync now, or once more after the one in flight. */
  sync(): Promise<void> {
    return this.flight.run()
  }

  private async syncOnce(): Promise<void> {
    try {
      const r = await joinOverlay(this.conf, this.client, {joinedOnly: true})
      if (!r) {
        // this host left the network (network rm) since the last scan: the scan stops this member
        this.log.info({action: 'overlay', network: this.conf.name, outcome: 'left'}, `overlay ${this.conf.name}: this host left the network`)
        this.stop()
        return
      }
      if (this.lastError !== undefined) this.log.info({action: 'overlay', network: this.conf.name, outcome: 'recovered'}, `overlay ${this.conf.name}: in sync again`)
      this.lastError = undefined
      if (r.slice !== this.slice) this.log.info({action: 'overlay', network: this.conf.name, slice: r.slice, peers: r.peers}, `overlay ${this.conf.name}: this host holds ${r.slice}`)
      this.slice = r.slice
    } catch (err) {
      const msg = errorMessage(err)
      if (msg !== this.lastError) this.log.error({action: 'overlay', network: this.conf.name, outcome: 'failed', reason: msg}, `overlay ${this.conf.name}: ${msg}`)
      this.lastError = msg
      throw err
    }
  }

  private async renewLoop(): Promise<void> {
    const period = Math.min(10_000, Math.max(1000, Math.floor((this.conf.leaseTtl * 1000) / 3)))
    const retry = new Backoff(RETRY)
    while (!this.ac.signal.aborted) {
      let wait = period
      try {
        await this.sync()
        retry.reset()
      } catch {
        wait = Math.min(retry.next(), period)
      }
      await sleep(wait, this.ac.signal)
    }
  }

  private async watchLoop(): Promise<void> {
    const retry = new Backoff(RETRY)
    while (!this.ac.signal.aborted) {
      try {
        await watchPrefix(
          this.client,
          subnetsPrefix(this.conf.vni),
          {
            // what changed while we were not watching: a full sync
            onReady: () => {
              retry.reset()
              void this.sync().catch(() => undefined)
            },
            onEvents: () => void this.sync().catch(() => undefined),
          },
          this.ac.signal,
        )
      } catch {
        // etcd unreachable: the renew loop logs it; the watch retries with backoff
      }
      await sleep(retry.next(), this.ac.signal)
    }
  }
}

export class DaemonOverlay {
  private readonly ac = new AbortController()
  private readonly members = new Map<string, Member>()
  private scanning: Promise<void> | undefined

  constructor(
    private readonly s: Pick<Settings, 'confDir' | 'namespace'>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.scanning = this.scanLoop()
  }

  async close(): Promise<void> {
    this.ac.abort()
    await this.scanning
    await Promise.all([...this.members.values()].map((m) => m.done))
  }

  /** Follows the overlay networks of the store: a member per joined network, stopped when its network goes or changes. */
  private async scanLoop(): Promise<void> {
    while (!this.ac.signal.aborted) {
      let confs: OverlayConf[] = []
      try {
        confs = overlayConfs(this.s).filter((c) => readState(c.stateDir, c.name)?.vni === c.vni)
      } catch (err) {
        this.log.error({action: 'overlay', outcome: 'failed', reason: errorMessage(err)}, 'overlay: cannot list networks')
      }
      const want = new Map(confs.map((c) => [`${c.name}|${JSON.stringify(c)}`, c]))
      for (const [k, m] of this.members) {
        if (!want.has(k) || m.stopped) {
          m.stop()
          this.members.delete(k)
        }
      }
      for (const [k, c] of want) if (!this.members.has(k)) this.members.set(k, new Member(c, this.log, this.ac.signal))
      await sleep(RESCAN_MS, this.ac.signal)
    }
  }
}
