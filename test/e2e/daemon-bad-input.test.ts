/**
 * Issue 11, bad input: containers whose labels name a missing network, carry
 * a bad port spec, bad JSON, an address outside the subnet, a host port
 * another container publishes, or the injection payloads of the security
 * issue in any label field (daemon-bad-labels.ts), under a RUNNING daemon
 * with a 1 s interval. Over many passes: each gives exactly one log line
 * (one line, no stack trace), failed attaches are retried with backoff (no
 * retry storm: counted in the pass summaries), nothing of them is
 * half-attached (no cache or journal entry, no lease, no rule naming it, no
 * veth, no interface in its netns), and a good container started alongside
 * is attached and answers. Then the fixes converge: new labels are tried at
 * once, a port freed is taken at the next try.
 *
 * Real containerd + runc on a private socket; the daemon runs in a
 * throwaway host netns (daemon-lib.ts).
 */
import {spawn} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, PrivateContainerd, sh} from './containerd-harness.js'
import {BAD_NET, fitsContainerd, type LabelCase, labelCases} from '../fixtures/daemon-bad-labels.js'
import {DaemonFixture, type LogLine, logLines, type RunningDaemon} from './daemon-lib.js'

const NS = 'dbi'
const NET = BAD_NET
let ctrd: PrivateContainerd
let host: HostNs
let d: DaemonFixture
let daemon: RunningDaemon | undefined
let sharedRootfs = ''

/** The injection cases containerd can hold (no NUL in argv, at most 4096 bytes a label), by container id. */
const injections = new Map<string, LabelCase>(
  labelCases()
    .filter(fitsContainerd)
    .map((c, i) => [`inj${i}`, c]),
)

/** Containers whose ADD fails, with what their one line must say. */
const FAILING: Record<string, {labels: Record<string, string>; reason: RegExp}> = {
  nonet: {labels: {'ctrnet/networks': `${NET},nosuchnet`}, reason: /^no such network: nosuchnet : /},
  outside: {labels: {'ctrnet/networks': JSON.stringify([{network: NET, ip: '10.99.0.5'}])}, reason: /10\.99\.0\.5/},
  taken: {labels: {'ctrnet/networks': NET, 'ctrnet/publish': '18400:80'}, reason: /18400/},
}

/** Containers refused for their labels beyond the injection corpus (the plain mistakes). */
const REFUSED: Record<string, {labels: Record<string, string>; reason: RegExp}> = {
  badjson: {labels: {'ctrnet/networks': '[{"network":"dbinet",'}, reason: /^invalid label ctrnet\/networks: /},
  badport: {labels: {'ctrnet/networks': NET, 'ctrnet/publish': '18401:80:80:80'}, reason: /^invalid label ctrnet\/publish: /},
  badport2: {labels: {'ctrnet/networks': NET, 'ctrnet/publish': '99999:80'}, reason: /^invalid label ctrnet\/publish: /},
}

/**
 * A container of the bad set: `sleep` in its own netns, on one rootfs
 * shared by all of them and one shim (runc's group annotation), so a
 * hundred of them stay cheap.
 */
async function runBad(id: string, labels: Record<string, string>): Promise<void> {
  // those that may be attached in the end serve http (the shared rootfs's page says "hello from dbi-bad")
  const cmd = id in FAILING ? ['sh', '-c', 'httpd -p 80 -h /www; exec sleep 86400'] : ['sleep', '86400']
  const args = ['-a', ctrd.address, '-n', NS, 'run', '-d', '--null-io', '--env', 'PATH=/bin', '--annotation', 'io.containerd.runc.v2.group=dbi-bad']
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`)
  // not spawnSync: a hundred of them would block the test worker's event loop
  const r = await ctrAsync([...args, '--rootfs', sharedRootfs, id, ...cmd])
  if (r.code !== 0) throw new Error(`ctr run ${id}: exit ${r.code}: ${r.stderr}`)
}

/** ctr on the private containerd, without blocking the test worker (spawnSync would, a hundred times). */
async function ctrAsync(args: string[]): Promise<{code: number | null; stderr: string}> {
  const child = spawn('ctr', args, {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return {code, stderr}
}

/** Runs fn over items, `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({length: limit}, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
}

/** id -> pid of the RUNNING tasks of NS. */
function taskPids(): Map<string, number> {
  const out = new Map<string, number>()
  for (const l of ctrd.ctrMust(NS, ['task', 'ls']).split('\n').slice(1)) {
    const f = l.split(/\s+/)
    if (f[2] === 'RUNNING') out.set(f[0]!, Number(f[1]))
  }
  return out
}

/** CNI container ids named in the comments of the host netns's iptables rules (portmap, ipmasq). */
function ruleOwners(): string[] {
  const ids = new Set<string>()
  for (const l of host.iptables().split('\n')) {
    if (!l.startsWith('-A')) continue
    for (const m of l.matchAll(/id: \\"([^"\\]+)\\"/g)) ids.add(m[1]!)
  }
  return [...ids].sort()
}

const hostVeths = () => host.links().split('\n').filter((l) => / veth/.test(l)).length

/** The interfaces in a task's netns (from the host, through its pid; not its root). */
function linksIn(pid: number): string[] {
  const r = sh('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link', 'show'])
  if (r.code !== 0) throw new Error(`ip link in the netns of pid ${pid}: ${r.stderr}`)
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? l)
}

const passes = (log: LogLine[]) => log.filter((l) => l.msg === 'reconcile pass done')
const linesOf = (log: LogLine[], id: string) => log.filter((l) => l.container === id)

beforeAll(async () => {
  ctrd = new PrivateContainerd('dbi')
  await ctrd.start()
  host = new HostNs('dbi')
  const runDir = join(host.dir, 'run')
  mkdirSync(runDir)
  d = new DaemonFixture(ctrd, host, NS, runDir)
  host.createNetwork(NET, ['--subnet', '10.46.9.0/24'], NS)
  sharedRootfs = ctrd.makeRootfs('dbi-bad')
})

afterAll(async () => {
  await daemon?.killHard()
  // the bad set first, a few at a time (ctrd.stop() removes what is left, one by one)
  if (ctrd?.running()) {
    const ids = ctrd.ctrMust(NS, ['containers', 'ls', '-q']).split('\n').filter(Boolean)
    await pool(ids, 4, async (id) => {
      await ctrAsync(['-a', ctrd.address, '-n', NS, 'task', 'rm', '-f', id])
      await ctrAsync(['-a', ctrd.address, '-n', NS, 'containers', 'rm', id])
    })
  }
  await ctrd?.stop()
  host?.cleanup()
})

describe('ctrnet daemon: bad input under a running daemon', () => {
  it('one log line per bad container, retries with backoff, nothing half-attached; a good container alongside is attached', async () => {
    // the port `taken` asks for is published first
    ctrd.runContainer(NS, 'owner', {labels: {'ctrnet/networks': NET, 'ctrnet/publish': '18400:80'}})
    const first = d.once(['--grace', '0s'])
    expect({code: first.code, stderr: first.stderr}).toEqual({code: 0, stderr: ''})
    expect(d.cache()).toEqual([`${NET}-${NS}-owner-eth0`])

    const all: Array<[string, Record<string, string>]> = [...[...injections].map(([id, c]): [string, Record<string, string>] => [id, c.labels]), ...Object.entries({...FAILING, ...REFUSED}).map(([id, c]): [string, Record<string, string>] => [id, c.labels])]
    await pool(all, 3, ([id, labels]) => runBad(id, labels))
    ctrd.runContainer(NS, 'good', {labels: {'ctrnet/networks': NET, 'ctrnet/publish': '18402:80'}})
    const bad = [...injections.keys(), ...Object.keys(FAILING), ...Object.keys(REFUSED)]
    expect(taskPids().size).toBe(bad.length + 2)

    daemon = d.start(['--reconcile-interval', '1s', '--grace', '0s'])
    const dm = daemon
    await dm.until('the attachment of the good container', () => d.cache().includes(`${NET}-${NS}-good-eth0`), 60_000)
    // 15 passes: at one a second (and one per event), a failing ADD retried at each would fail 15 times
    await dm.until('15 reconcile passes', () => passes(logLines(dm.out())).length >= 15, 60_000)
    const log = logLines(dm.out()) // every line is one JSON object (logLines throws otherwise)
    expect(dm.out()).not.toMatch(/\n\s+at /) // no stack trace
    expect(dm.running()).toBe(true)

    // exactly one line per bad container, one line of text, saying why
    for (const [id, c] of injections) {
      const lines = linesOf(log, id)
      expect({case: c.name, n: lines.length}).toEqual({case: c.name, n: 1})
      expect({case: c.name, outcome: lines[0]!.outcome}).toEqual({case: c.name, outcome: 'refused'})
      expect({case: c.name, reason: lines[0]!.reason}).toEqual({case: c.name, reason: expect.stringMatching(c.field)})
    }
    for (const [id, c] of Object.entries(REFUSED)) {
      expect(linesOf(log, id)).toEqual([expect.objectContaining({outcome: 'refused', reason: expect.stringMatching(c.reason)})])
    }
    for (const [id, c] of Object.entries(FAILING)) {
      expect(linesOf(log, id)).toEqual([expect.objectContaining({action: 'attach', outcome: 'failed', network: expect.any(String), reason: expect.stringMatching(c.reason), attempt: 1})])
    }
    for (const l of log.filter((x) => typeof x.reason === 'string')) expect(l.reason).not.toMatch(/[\n\r\u2028\u2029]/)
    expect(linesOf(log, 'good')).toEqual([expect.objectContaining({action: 'attach', outcome: 'ok', network: NET})])
    expect(linesOf(log, 'owner')).toEqual([])

    // no retry storm: the failing ADDs were retried (the passes count them), with backoff
    const summaries = passes(log)
    const failedTotal = summaries.reduce((n, l) => n + Number(l.failed), 0)
    const spanS = (Date.parse(String(summaries.at(-1)!.time)) - Date.parse(String(summaries[0]!.time))) / 1000
    const n = Object.keys(FAILING).length
    // tries at 0, 1, 3, 7, 15 s...: at most 2 + log2(span + 1) each
    const most = n * Math.floor(2 + Math.log2(spanS + 1))
    const stats = {passes: summaries.length, spanS, failedTotal}
    console.log(`bad input: ${bad.length} bad containers; the ${n} failing ones under a 1 s interval: ${JSON.stringify(stats)}`)
    expect(failedTotal, JSON.stringify(stats)).toBeGreaterThanOrEqual(2 * n)
    expect(failedTotal, JSON.stringify(stats)).toBeLessThanOrEqual(most)
    expect(most, JSON.stringify(stats)).toBeLessThan(n * summaries.length)
    expect(summaries.some((l) => Number(l.held) === n)).toBe(true)
    expect(summaries.every((l) => Number(l.refused) === injections.size + Object.keys(REFUSED).length)).toBe(true)

    // nothing half-attached: only owner and good hold anything
    const attached = [`${NS}-good`, `${NS}-owner`]
    expect(d.cache()).toEqual(attached.map((c) => `${NET}-${c}-eth0`))
    expect(d.journal()).toEqual([])
    expect(host.leases(NET)).toHaveLength(2)
    expect(ruleOwners()).toEqual(attached)
    expect(hostVeths()).toBe(2)
    const pids = taskPids()
    for (const id of bad) expect({id, links: linksIn(pids.get(id)!)}).toEqual({id, links: ['lo']})
    const got = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.9.1:18402/'])
    expect({code: got.code, out: got.stdout}).toEqual({code: 0, out: `hello from ${NS}-good\n`})
    // the port stays the owner's
    const own = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.9.1:18400/'])
    expect({code: own.code, out: own.stdout}).toEqual({code: 0, out: `hello from ${NS}-owner\n`})
  }, 300_000) // a hundred containers to start on a loaded 2-core machine

  it('fixes converge: new labels are tried at once, a port freed is taken at the next try', async () => {
    const dm = daemon!
    const mark = logLines(dm.out()).length
    const since = () => logLines(dm.out()).slice(mark)

    // new labels: a new intent, out of the backoff
    ctrd.ctrMust(NS, ['containers', 'label', 'nonet', `ctrnet/networks=${NET}`])
    await dm.until('the attachment of the relabelled container', () => d.cache().includes(`${NET}-${NS}-nonet-eth0`), 30_000)
    // the port's owner dies: released, then `taken` gets it at its next try
    await ctrd.killTask(NS, 'owner')
    await dm.until('the release of the owner', () => !d.cache().includes(`${NET}-${NS}-owner-eth0`), 30_000)
    await dm.until('the attachment of the container that wanted its port', () => d.cache().includes(`${NET}-${NS}-taken-eth0`), 120_000)
    await dm.until('the log line of that attachment', () => since().some((l) => l.container === 'taken' && l.outcome === 'ok'))

    const after = since()
    expect(linesOf(after, 'nonet')).toEqual([expect.objectContaining({action: 'attach', outcome: 'ok', network: NET})])
    expect(linesOf(after, 'taken')).toEqual([expect.objectContaining({action: 'attach', outcome: 'ok', network: NET})])
    // still nothing new of the others
    expect(linesOf(after, 'outside')).toEqual([])
    for (const id of injections.keys()) expect({id, lines: linesOf(after, id)}).toEqual({id, lines: []})

    const got = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.9.1:18400/'])
    expect({code: got.code, out: got.stdout}).toEqual({code: 0, out: 'hello from dbi-bad\n'})
    expect(d.journal()).toEqual([])
    expect(ruleOwners()).toEqual([`${NS}-good`, `${NS}-nonet`, `${NS}-taken`])
    expect(host.leases(NET)).toHaveLength(3)
    expect(hostVeths()).toBe(3)

    // `network connect` goes through the same check: a port the daemon attached is taken for it too
    const con = d.cli(['network', 'connect', NET, 'outside', '-p', '18402:80'])
    expect({code: con.code, stderr: con.stderr}).toEqual({
      code: 1,
      stderr: `ctrnet: network connect ${NET} outside : host port 18402/tcp is already published by ${NS}-good on network ${NET}\n`,
    })
    expect(d.cache()).not.toContain(`${NET}-${NS}-outside-eth0`)
    expect(host.leases(NET)).toHaveLength(3)

    dm.proc.kill('SIGTERM')
    const code = await Promise.race([dm.exited, new Promise<string>((r) => setTimeout(() => r('still running 20s after SIGTERM'), 20_000))])
    expect(code).toBe(0)
  }, 240_000)
})
