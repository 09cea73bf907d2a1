import {join} from 'node:path'
import {FileLock} from '../../sys/flock.js'
import {CtrnetError, errorMessage} from '../../sys/errors.js'
import type {Settings} from '../settings.js'
import {type DaemonLog, newDaemonState, reconcile, type ReconcileReport} from './reconcile.js'

/**
 * `ctrnet daemon`: one instance per host (flock on <runDir>/daemon.lock),
 * a reconcile at start and every interval; with once, a single pass. Stops
 * when `signal` aborts: the pass in flight finishes (at most stopGraceMs)
 * and no new one starts.
 */
export interface DaemonOptions {
  intervalMs: number
  graceMs: number
  once: boolean
  runDir: string
  log: DaemonLog
  /** how long a stop waits for the pass in flight (default 10 s) */
  stopGraceMs?: number
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
    const stopped = new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), {once: true})))
    let report: ReconcileReport | undefined
    let lastError: string | undefined
    while (!signal.aborted) {
      const inFlight = pass().then(
        (r) => {
          report = r
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
        opts.log.info({action: 'stop', outcome: gaveUp ? 'abandoned the pass in flight' : 'ok'}, 'daemon stopped')
        return {report, abandoned: gaveUp}
      }
      await delay(opts.intervalMs, signal)
    }
    opts.log.info({action: 'stop', outcome: 'ok'}, 'daemon stopped')
    return {report, abandoned: false}
  } finally {
    lock.release()
  }
}

/** Resolves after ms, or at once when signal aborts (the timer keeps the process alive until then). */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, {once: true})
  })
}
