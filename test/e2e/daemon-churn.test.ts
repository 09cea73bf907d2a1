/**
 * Issue 11, churn: a running `ctrnet daemon` (grace 1 s) while 40 containers
 * asking for a network (a third of them with a published port) are started
 * and killed in overlapping waves of 10: each wave starts while the one
 * before it is killed (often while the daemon is still attaching it), and
 * in the same phase some of the wave before that are restarted with a new
 * task, deleted, or killed again. After the daemon has settled (a whole
 * reconcile pass begun later than the last change + the grace), the
 * accounting is exact: cache entries, journal, leases, iptables rules and
 * host veths are those of the running containers, each attached once in its
 * task's current netns, and nothing is left of a stopped or deleted one.
 * Real containerd + runc on a private socket; the daemon runs in a
 * throwaway host netns.
 */
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, PrivateContainerd} from './containerd-harness.js'
import {ctrAsync, DaemonFixture, logLines, type RunningDaemon} from './daemon-lib.js'

const NS = 'dmc'
const NET = 'dmcnet'
const GRACE_MS = 1000
const WAVES = 4
const WAVE = 10
let ctrd: PrivateContainerd
let host: HostNs
let d: DaemonFixture
let daemon: RunningDaemon | undefined

const ids = Array.from({length: WAVES * WAVE}, (_, i) => `c${String(i).padStart(2, '0')}`)
/** every third container publishes a port of its own */
const published = ids.filter((_, i) => i % 3 === 0)
const rootfs = new Map<string, string>()

type Action = 'start' | 'kill' | 'restart' | 'delete'
interface Step {
  id: string
  action: Action
  /** a kill that waits until the daemon has attached the task (the others race its attach) */
  afterAttach?: boolean
}

/**
 * What happens to the j-th container (0..9) of a wave, phase by phase after
 * the phase that starts it. A wave is killed in the phase after its start,
 * while the next wave starts: half of it once the daemon has attached it,
 * half at once (racing the attach). One phase later some of it is restarted
 * (a new task, new netns) or deleted, and one restarted task is killed again,
 * attached, in the phase after that. The last wave keeps running, but for
 * two of it killed at the end.
 */
function fate(wave: number, j: number): Array<Omit<Step, 'id'>> {
  const kill = {action: 'kill' as const, afterAttach: j % 2 === 0}
  if (wave === WAVES - 1) return j < 8 ? [] : [kill]
  if (j <= 2) return [kill, {action: 'restart'}]
  if (j === 3) return [kill, {action: 'restart'}, {action: 'kill', afterAttach: true}]
  if (j <= 5) return [kill, {action: 'delete'}]
  return [kill]
}

/** Phase -> the steps of that phase, kinds of action interleaved. */
function schedule(): Step[][] {
  const phases: Step[][] = []
  const at = (p: number) => (phases[p] ??= [])
  for (let w = 0; w < WAVES; w++) {
    for (let j = 0; j < WAVE; j++) {
      const id = ids[w * WAVE + j]!
      at(w).push({id, action: 'start'})
      fate(w, j).forEach((step, k) => at(w + 1 + k).push({id, ...step}))
    }
  }
  // a start, a kill, a restart, a delete, a start, ...
  return phases.map((p) => {
    const byKind = (['start', 'kill', 'restart', 'delete'] as const).map((a) => p.filter((x) => x.action === a))
    const out: Step[] = []
    for (let i = 0; out.length < p.length; i++) for (const k of byKind) if (k[i]) out.push(k[i]!)
    return out
  })
}

/** The state the schedule leaves: running ids (a start or restart was the last action), sorted. */
function expectedRunning(): string[] {
  const last = new Map<string, Action>()
  for (const p of schedule()) for (const {id, action} of p) last.set(id, action)
  return [...last].filter(([, a]) => a === 'start' || a === 'restart').map(([id]) => id).sort()
}

async function must(args: string[]): Promise<void> {
  const r = await ctrAsync(ctrd, NS, args)
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} -> exit ${r.code}: ${r.stderr.trim()}`)
}

/** `ctr task rm`: the task may take a moment to be reported stopped after its kill. */
async function removeTask(id: string, force: boolean): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await ctrAsync(ctrd, NS, ['task', 'rm', ...(force ? ['-f'] : []), id])
    if (r.code === 0) return
    if (i >= 50) throw new Error(`ctr task rm ${id} -> exit ${r.code}: ${r.stderr.trim()}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

/** Resolves once the daemon has attached the current task of `id` (its cache entry names the task's netns). */
async function attached(id: string): Promise<void> {
  const entry = `${NET}-${NS}-${id}-eth0`
  const deadline = Date.now() + 60_000
  for (;;) {
    const ls = await ctrAsync(ctrd, NS, ['task', 'ls'])
    const pid = ls.stdout.split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[0] === id)?.[1]
    if (pid && d.cache().includes(entry) && d.cached(entry).netns === `/proc/${pid}/ns/net`) return
    if (Date.now() > deadline) throw new Error(`${id} not attached within 60s; daemon output:\n${daemon?.out() ?? ''}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

async function act({id, action, afterAttach}: Step): Promise<void> {
  switch (action) {
    case 'start': {
      const labels: string[] = ['--label', `ctrnet/networks=${NET}`]
      if (published.includes(id)) labels.push('--label', `ctrnet/publish=${18400 + ids.indexOf(id)}:80`)
      await must(['run', '-d', '--null-io', '--env', 'PATH=/bin', ...labels, '--rootfs', rootfs.get(id)!, id, 'sleep', '86400'])
      return
    }
    case 'kill':
      if (afterAttach) await attached(id)
      await must(['task', 'kill', '-s', 'SIGKILL', id])
      return
    case 'restart':
      await removeTask(id, false)
      await must(['task', 'start', '-d', '--null-io', id])
      return
    case 'delete':
      await removeTask(id, true)
      await must(['container', 'rm', id])
      return
  }
}

/** Runs the actions, at most `limit` at a time, in order. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
}

beforeAll(async () => {
  ctrd = new PrivateContainerd('dmc')
  await ctrd.start()
  host = new HostNs('dmc')
  const runDir = join(host.dir, 'run')
  mkdirSync(runDir)
  d = new DaemonFixture(ctrd, host, NS, runDir)
  host.createNetwork(NET, ['--subnet', '10.46.9.0/24'], NS)
  for (const id of ids) rootfs.set(id, ctrd.makeRootfs(`${NS}-${id}`))
})

afterAll(async () => {
  await daemon?.killHard()
  await ctrd?.stop()
  host?.cleanup()
})

describe('ctrnet daemon: churn', () => {
  it('40 containers started and killed in overlapping waves: leases, rules, cache and journal match the running containers exactly', async () => {
    // an interval of 2 s as well as the events: the settling below waits for a pass begun after the last change
    const dm = d.start(['--reconcile-interval', '2s', '--grace', `${GRACE_MS / 1000}s`])
    daemon = dm
    await dm.until('the event subscription', () => dm.out().includes('"following containerd events"'))

    const began = Date.now()
    const phases = schedule()
    for (const [p, actions] of phases.entries()) {
      const t0 = Date.now()
      await pool(actions, 4, act)
      console.log(`churn phase ${p}: ${actions.length} actions (${actions.map((a) => `${a.action}${a.afterAttach ? ' (attached)' : ''} ${a.id}`).join(', ')}) in ${Date.now() - t0} ms`)
    }

    // the last kills land: every task is in its final state (containerd says so), then the clock starts
    const want = expectedRunning()
    const isFinal = () => {
      const tasks = d.tasks()
      return [...tasks].every(([id, t]) => (want.includes(id) ? t.status === 'RUNNING' : t.status === 'STOPPED')) && want.every((id) => tasks.has(id))
    }
    await dm.until('every task in its final state', isFinal)
    const lastChange = Date.now()
    expect(d.running()).toEqual(want)

    // settled: two passes done after lastChange + grace, so the second one began after it
    const passesAfter = (t: number) => logLines(dm.out()).filter((l) => l.msg === 'reconcile pass done' && Date.parse(String(l.time)) > t).length
    await dm.until('two reconcile passes done after the last change + the grace period', () => passesAfter(lastChange + GRACE_MS + 100) >= 2, 60_000)

    const log = logLines(dm.out())
    const count = (action: string, outcome: string) => log.filter((l) => l.action === action && l.outcome === outcome).length
    const stats = {
      churnMs: lastChange - began,
      attached: count('attach', 'ok'),
      released: count('release', 'ok'),
      failed: log.filter((l) => l.outcome === 'failed').map((l) => `${String(l.action)} ${String(l.container)}: ${String(l.reason)}`),
      passes: log.filter((l) => l.msg === 'reconcile pass done').length,
    }
    console.log(`daemon churn: ${JSON.stringify(stats)}`)

    // exact: each running container attached once in its task's current netns, nothing of the others
    const pub = published.filter((id) => want.includes(id))
    expect(d.account(NET)).toEqual(d.expectedAccount(NET, want, pub))
    // the same rules for every container of a kind (a second attachment would double them)
    const counts = d.ruleCounts()
    const of = (xs: string[]) => [...new Set(xs.map((id) => counts.get(`${NS}-${id}`)))]
    expect(of(pub)).toHaveLength(1)
    expect(of(want.filter((id) => !pub.includes(id)))).toHaveLength(1)
    expect(of(pub)[0]!).toBeGreaterThan(of(want.filter((id) => !pub.includes(id)))[0]!)
    // the churn did attach and release: every task running at the end, and every task killed once attached
    const killedAttached = phases.flat().filter((s) => s.afterAttach).length
    expect(stats.attached).toBeGreaterThanOrEqual(want.length + killedAttached)
    expect(stats.released).toBeGreaterThanOrEqual(killedAttached)

    // and a fresh pass agrees: the running daemon left nothing to do
    dm.proc.kill('SIGTERM')
    const code = await Promise.race([dm.exited, new Promise<string>((r) => setTimeout(() => r('still running 20s after SIGTERM'), 20_000))])
    expect(code).toBe(0)
    const r = d.once(['--grace', `${GRACE_MS / 1000}s`])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    expect(r.log.filter((l) => l.action === 'attach' || l.action === 'release')).toEqual([])
  }, 600_000) // ~70 s alone, 120 s and more on a loaded 2-core machine
})
