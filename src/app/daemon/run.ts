import {join} from 'node:path'
import {FileLock} from '../../sys/flock.js'
import {CtrnetError, errorMessage} from '../../sys/errors.js'
import {Backoff, sleep as delay} from '../../sys/timing.js'
import type {Logger} from '../../sys/log.js'
import type {Settings} from '../settings.js'
import {withContainerd} from '../containers.js'
import {newDaemonState, reconcile, type ReconcileReport} from './reconcile.js'
import {DaemonDns, type DaemonDnsOptions} from './dns.js'
import {DaemonOverlay} from './overlay.js'

/**
 * `ctrnet daemon`: one instance per host (flock on <runDir>/daemon.lock),
 * a reconcile at start and every interval; with once, a single pass. Stops
 * when `signal` aborts: the pass in flight finishes (at most stopGraceMs)
 * and no new one starts.
 *
 * containerd's events are hints, never the truth (containerd replays none):
 * a task start, an init process's exit, a task or container delete only
 * bring the next level-triggered pass forward (an exit also schedules one
 * when its grace period ends), and every (re)connection of the event stream
 * is followed by a full pass.
 */
export interface DaemonOptions {
  intervalMs: number
  graceMs: number
  once: boolean
  runDir: string
  log: Logger
  /** how long a stop waits for the pass in flight (default 10 s) */
  stopGraceMs?: number
  /** the names service (not with once); undefined: none */
  dns?: DaemonDnsOptions
}

export interface DaemonOutcome {
  /** the report of the last finished pass */
  report?: ReconcileReport
  /** a stop gave up waiting for the pass in flight */
  abandoned: boolean
}


function daemonLockPath(runDir: string): string {
  return join(runDir, 'daemon.lock')
}

export async function runDaemon(s: Settings, opts: DaemonOptions, signal: AbortSignal): Promise<DaemonOutcome> {
  const lockPath = daemonLockPath(opts.runDir)
  const lock = await FileLock.tryAcquire(lockPath)
  if (!lock) throw new CtrnetError('daemon', `another daemon holds ${lockPath}`)
  try {
    const state = newDaemonState()
    const pass = () => reconcile(s, {graceMs: opts.graceMs, log: opts.log, state, stopping: () => signal.aborted})
    if (opts.once) return {report: await pass(), abandoned: false}

    opts.log.info({action: 'start', intervalMs: opts.intervalMs, graceMs: opts.graceMs, runDir: opts.runDir}, 'daemon started')
    const wake = new Wake()
    const dns = opts.dns ? new DaemonDns(s, opts.dns) : undefined
    const overlay = new DaemonOverlay(s, opts.log)
    try {
      await dns?.start()
      overlay.start()
      return await loop(s, opts, pass, wake, dns, signal)
    } finally {
      await overlay.close()
      await dns?.close()
    }
  } finally {
    lock.release()
  }
}

async function loop(s: Settings, opts: DaemonOptions, pass: () => Promise<ReconcileReport>, wake: Wake, dns: DaemonDns | undefined, signal: AbortSignal): Promise<DaemonOutcome> {
  const stopped = new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), {once: true})))
  const watching = watchEvents(s, opts, wake, dns, signal)
  let report: ReconcileReport | undefined
  let lastError: string | undefined
  while (!signal.aborted) {
    let retryAt: number | undefined // the earliest next try of a container in backoff
    const inFlight = pass().then(
      (r) => {
        report = r
        retryAt = r.nextRetry
        void dns?.refresh()
        if (lastError !== undefined) opts.log.info({action: 'reconcile', outcome: 'recovered'}, 'reconcile works again')
        lastError = undefined
      },
      (err: unknown) => {
        // containerd down or restarting: one line per change of state, then retry at the next interval
        const msg = errorMessage(err)
        if (msg !== lastError) opts.log.error({action: 'reconcile', outcome: 'failed', reason: msg}, `reconcile failed: ${msg}`)
        lastError = msg
      },
    )
    await Promise.race([inFlight, stopped])
    if (signal.aborted) {
      const settled = new AbortController()
      const gaveUp = await Promise.race([inFlight.then(() => false), delay(opts.stopGraceMs ?? 10_000, settled.signal).then(() => !settled.signal.aborted)])
      settled.abort()
      await Promise.race([watching, delay(1000)])
      opts.log.info({action: 'stop', outcome: gaveUp ? 'abandoned the pass in flight' : 'ok'}, 'daemon stopped')
      return {report, abandoned: gaveUp}
    }
    // a few ms past the next try, so that the pass finds it due
    await wake.wait(retryAt === undefined ? opts.intervalMs : Math.min(opts.intervalMs, Math.max(0, retryAt - Date.now()) + 5), signal)
  }
  await Promise.race([watching, delay(1000)])
  opts.log.info({action: 'stop', outcome: 'ok'}, 'daemon stopped')
  return {report, abandoned: false}
}

/**
 * What the loop sleeps on between passes: the interval, or an earlier wake-up
 * asked for by an event. A wake-up asked for during a pass is kept for the
 * next wait, so no hint is lost.
 */
class Wake {
  private due: number | undefined
  private ring: (() => void) | undefined
  private timers = new Set<NodeJS.Timeout>()

  /** Bring the next pass forward to `afterMs` from now (0: as soon as the pass in flight is done). */
  at(afterMs: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.due = Date.now()
      this.ring?.()
    }, afterMs)
    t.unref() // a hint never keeps a stopping daemon alive
    this.timers.add(t)
  }

  async wait(intervalMs: number, signal: AbortSignal): Promise<void> {
    if (this.due === undefined) {
      const woken = new AbortController()
      this.ring = () => woken.abort()
      const both = AbortSignal.any([signal, woken.signal])
      await delay(intervalMs, both)
      this.ring = undefined
    }
    this.due = undefined
    if (signal.aborted) for (const t of this.timers) clearTimeout(t)
  }
}

/** After a broken event stream, wait this long before the next try (doubling up to the cap). */
const EVENTS_RETRY = {firstMs: 500, capMs: 30_000}
const EVENT_FILTERS = ['topic=="/tasks/start"', 'topic=="/tasks/exit"', 'topic=="/tasks/delete"', 'topic=="/containers/delete"', 'topic=="/containers/update"']

/**
 * Follows containerd's events until `signal` aborts, turning them into
 * wake-ups; reconnects with capped backoff, one log line per change of state.
 */
async function watchEvents(s: Settings, opts: DaemonOptions, wake: Wake, dns: DaemonDns | undefined, signal: AbortSignal): Promise<void> {
  const retry = new Backoff(EVENTS_RETRY)
  let lastError: string | undefined
  while (!signal.aborted) {
    try {
      await withContainerd(s, async (client) => {
        const events = client.subscribe(EVENT_FILTERS, signal)[Symbol.asyncIterator]()
        const first = events.next() // the subscription is live once containerd answers
        opts.log.info({action: 'events', outcome: lastError === undefined ? 'ok' : 'recovered'}, 'following containerd events')
        lastError = undefined
        retry.reset()
        wake.at(0) // what happened while we were not listening: a full pass
        for (let r = await first; !r.done; r = await events.next()) {
          const e = r.value.event
          // an exec's exit says nothing of the container's network
          if (e?.type === 'TaskExit' && e.id !== e.containerId) continue
          // an exit, or labels changed (aliases, a name): the names served change now, not at the next pass
          void dns?.refresh()
          if (e?.type === 'ContainerUpdate') continue
          wake.at(0)
          if (e?.type === 'TaskExit' || e?.type === 'TaskDelete') wake.at(opts.graceMs + 100)
        }
      })
    } catch (err) {
      const msg = errorMessage(err)
      if (msg !== lastError) opts.log.error({action: 'events', outcome: 'failed', reason: msg}, `containerd events: ${msg}`)
      lastError = msg
    }
    if (signal.aborted) break
    await delay(retry.next(), signal)
  }
}
