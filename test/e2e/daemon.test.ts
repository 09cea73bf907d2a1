/**
 * Issue 11 (foundations): `ctrnet daemon` reconciles containers' intent
 * (labels ctrnet/networks + ctrnet/publish) with the CNI cache, against a
 * private containerd: attach on a running task, release after the grace
 * period, attach again in a new task, never attach a nerdctl-style
 * container, one log line per bad label, one daemon per run dir, SIGTERM.
 */
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, PrivateContainerd, type RunResult} from './containerd-harness.js'
import {DaemonFixture, type LogLine, type RunningDaemon} from './daemon-lib.js'

const NS = 'dmn'
let ctrd: PrivateContainerd
let host: HostNs
let runDir: string
let d: DaemonFixture

function cli(args: string[]): RunResult {
  return d.cli(args)
}
/** One `daemon --once` pass; its log lines parsed. */
function once(extra: string[] = []): RunResult & {log: LogLine[]} {
  return d.once(extra)
}
const cache = () => d.cache()
const journal = () => d.journal()
const rulesOf = (cid: string) => d.rulesOf(cid)
const cached = (entry: string) => d.cached(entry)
const web = {'ctrnet/networks': 'dmnnet', 'ctrnet/publish': '18090:80'}

beforeAll(async () => {
  ctrd = new PrivateContainerd('dmn')
  await ctrd.start()
  host = new HostNs('dmn')
  runDir = join(host.dir, 'run')
  mkdirSync(runDir)
  d = new DaemonFixture(ctrd, host, NS, runDir)
  host.createNetwork('dmnnet', ['--subnet', '10.46.1.0/24'], NS)
  ctrd.runContainer(NS, 'web', {labels: web})
  ctrd.runContainer(NS, 'nerd', {labels: {'nerdctl/networks': '["dmnnet"]'}})
})

afterAll(async () => {
  await ctrd?.stop()
  host?.cleanup()
})

describe('ctrnet daemon --once', () => {
  it('attaches a running container that asks for a network, with its port, and not a nerdctl-style one', () => {
    const r = once(['--grace', '0s'])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    const attach = r.log.filter((l) => l.action === 'attach')
    expect(attach).toHaveLength(1)
    expect(attach[0]).toMatchObject({container: 'web', namespace: NS, network: 'dmnnet', outcome: 'ok', ifname: 'eth0'})
    expect(typeof attach[0]!.ms).toBe('number')

    expect(cache()).toEqual(['dmnnet-dmn-web-eth0'])
    const entry = cached('dmnnet-dmn-web-eth0')
    expect(entry.netns).toBe(`/proc/${ctrd.taskPid(NS, 'web')}/ns/net`)
    expect(entry.capabilityArgs).toEqual({portMappings: [{hostPort: 18090, containerPort: 80, protocol: 'tcp'}]})
    expect(host.leases('dmnnet')).toHaveLength(1)
    expect(rulesOf('dmn-web').some((l) => l.includes('18090'))).toBe(true)
    const got = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.1.1:18090/'])
    expect({code: got.code, out: got.stdout}).toEqual({code: 0, out: 'hello from dmn-web\n'})
    expect(rulesOf('dmn-nerd')).toEqual([])

    // a second pass finds nothing to do
    const again = once(['--grace', '0s'])
    expect(again.code).toBe(0)
    expect(again.log.filter((l) => l.action === 'attach' || l.action === 'release')).toEqual([])
  })

  it('keeps the attachment of a stopped task during the grace period, and releases it after', async () => {
    const before = rulesOf('dmn-web')
    expect(before.length).toBeGreaterThan(0)
    await ctrd.killTask(NS, 'web')

    const waiting = once(['--grace', '1h'])
    expect(waiting.code).toBe(0)
    expect(cache()).toEqual(['dmnnet-dmn-web-eth0'])
    expect(host.leases('dmnnet')).toHaveLength(1)

    const r = once(['--grace', '0s'])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    expect(r.log.filter((l) => l.action === 'release')).toEqual([
      expect.objectContaining({container: 'web', namespace: NS, network: 'dmnnet', outcome: 'ok', reason: 'task stopped'}),
    ])
    expect(cache()).toEqual([])
    expect(journal()).toEqual([])
    expect(host.leases('dmnnet')).toEqual([])
    expect(rulesOf('dmn-web')).toEqual([])
    // the intent stays on the container
    expect(ctrd.labels(NS, 'web')['ctrnet/networks']).toBe('dmnnet')
  })

  it('attaches a new task of the container again, in its new netns, same port', () => {
    const pid = ctrd.restartTask(NS, 'web')
    const r = once(['--grace', '0s'])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    expect(r.log.filter((l) => l.action === 'attach')).toEqual([expect.objectContaining({container: 'web', outcome: 'ok'})])
    expect(cache()).toEqual(['dmnnet-dmn-web-eth0'])
    expect(cached('dmnnet-dmn-web-eth0').netns).toBe(`/proc/${pid}/ns/net`)
    expect(host.leases('dmnnet')).toHaveLength(1)
    const got = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.1.1:18090/'])
    expect({code: got.code, out: got.stdout}).toEqual({code: 0, out: 'hello from dmn-web\n'})
  })

  it('gives one log line per bad label and attaches nothing of it, while a good container in the same pass is attached', () => {
    ctrd.runContainer(NS, 'badjson', {labels: {'ctrnet/networks': '[{"network":'}})
    ctrd.runContainer(NS, 'badport', {labels: {'ctrnet/networks': 'dmnnet', 'ctrnet/publish': '99999:80'}})
    ctrd.runContainer(NS, 'nonet', {labels: {'ctrnet/networks': 'dmnnet,nosuchnet'}})
    ctrd.runContainer(NS, 'good', {labels: {'ctrnet/networks': 'dmnnet'}})
    const r = once(['--grace', '0s'])
    // --once exits 1 when something did not converge, with one line
    expect(r.code).toBe(1)
    expect(r.stderr).toBe('ctrnet: daemon --once : 1 failed, 2 refused (see the log)\n')
    for (const bad of ['badjson', 'badport', 'nonet']) {
      const lines = r.log.filter((l) => l.container === bad)
      expect({bad, n: lines.length}).toEqual({bad, n: 1})
      expect(lines[0]!.outcome).toMatch(/^(refused|failed)$/)
    }
    expect(r.log.find((l) => l.container === 'badjson')!.reason).toMatch(/label ctrnet\/networks/)
    expect(r.log.find((l) => l.container === 'badport')!.reason).toMatch(/label ctrnet\/publish/)
    expect(r.log.find((l) => l.container === 'nonet')!.reason).toMatch(/no such network: nosuchnet/)
    expect(r.log.filter((l) => l.action === 'attach' && l.outcome === 'ok')).toEqual([expect.objectContaining({container: 'good', network: 'dmnnet'})])
    expect(cache()).toEqual(['dmnnet-dmn-good-eth0', 'dmnnet-dmn-web-eth0'])
    expect(journal()).toEqual([])
    expect(host.leases('dmnnet')).toHaveLength(2)
    for (const bad of ['badjson', 'badport', 'nonet']) expect(rulesOf(`dmn-${bad}`)).toEqual([])
  })

  it('releases everything of a removed container', () => {
    for (const bad of ['badjson', 'badport', 'nonet']) ctrd.removeContainer(NS, bad)
    ctrd.removeContainer(NS, 'good')
    const r = once(['--grace', '1h'])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    expect(r.log.filter((l) => l.action === 'release')).toEqual([expect.objectContaining({container: 'dmn-good', network: 'dmnnet', outcome: 'ok', reason: 'container gone'})])
    expect(cache()).toEqual(['dmnnet-dmn-web-eth0'])
    expect(host.leases('dmnnet')).toHaveLength(1)
    expect(rulesOf('dmn-good')).toEqual([])
  })
})

describe('network connect records the network for the daemon', () => {
  it('connect writes ctrnet/networks; the daemon attaches the new task of a restart; disconnect removes it', async () => {
    ctrd.runContainer(NS, 'conn', {labels: {'nerdctl/name': 'conn'}})
    const con = cli(['network', 'connect', 'dmnnet', 'conn', '-p', '18091:80'])
    expect({code: con.code, stderr: con.stderr}).toEqual({code: 0, stderr: ''})
    expect(ctrd.labels(NS, 'conn')['ctrnet/networks']).toBe('[{"network":"dmnnet","publish":["18091:80"]}]')
    expect(ctrd.labels(NS, 'conn')['nerdctl/networks']).toBe('["dmnnet"]')
    // the daemon sees it attached: nothing to do
    const idle = once(['--grace', '0s'])
    expect(idle.log.filter((l) => l.container === 'conn')).toEqual([])

    await ctrd.killTask(NS, 'conn')
    const pid = ctrd.restartTask(NS, 'conn')
    const r = once(['--grace', '0s'])
    expect({code: r.code, stderr: r.stderr}).toEqual({code: 0, stderr: ''})
    expect(r.log.filter((l) => l.container === 'conn').map((l) => [l.action, l.outcome, l.reason])).toEqual([
      ['release', 'ok', 'task replaced'],
      ['attach', 'ok', undefined],
    ])
    expect(cached('dmnnet-dmn-conn-eth0').netns).toBe(`/proc/${pid}/ns/net`)
    const got = host.exec('busybox', ['wget', '-q', '-O', '-', 'http://10.46.1.1:18091/'])
    expect({code: got.code, out: got.stdout}).toEqual({code: 0, out: 'hello from dmn-conn\n'})

    const dis = cli(['network', 'disconnect', 'dmnnet', 'conn'])
    expect({code: dis.code, stderr: dis.stderr}).toEqual({code: 0, stderr: ''})
    expect(ctrd.labels(NS, 'conn')).not.toHaveProperty('ctrnet/networks')
    expect(cache()).not.toContain('dmnnet-dmn-conn-eth0')
    // and the daemon does not bring it back
    once(['--grace', '0s'])
    expect(cache()).not.toContain('dmnnet-dmn-conn-eth0')
    ctrd.removeContainer(NS, 'conn')
  })
})

describe('ctrnet daemon (running)', () => {
  let daemon: RunningDaemon | undefined
  const out = () => daemon?.out() ?? ''

  afterAll(async () => {
    await daemon?.killHard()
  })

  async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
    await daemon!.until(what, ok, ms)
  }

  /** Starts `ctrnet daemon` in the host netns; resolves with its exit code. */
  function startDaemon(interval: string): Promise<number | null> {
    daemon = d.start(['--reconcile-interval', interval, '--grace', '0s'])
    return daemon.exited
  }

  it('one instance per run dir; it attaches a container started while it runs; SIGTERM makes it exit 0', async () => {
    const exited = startDaemon('500ms')
    await until('the first reconcile pass', () => out().includes('"reconcile pass done"'))

    const second = once()
    expect({code: second.code, stderr: second.stderr, stdout: second.stdout}).toEqual({
      code: 1,
      stderr: `ctrnet: daemon : another daemon holds ${join(runDir, 'daemon.lock')}\n`,
      stdout: '',
    })

    ctrd.runContainer(NS, 'late', {labels: {'ctrnet/networks': 'dmnnet'}})
    await until('the attachment of the container started later', () => cache().includes('dmnnet-dmn-late-eth0'))
    expect(host.leases('dmnnet')).toHaveLength(2)

    daemon!.proc.kill('SIGTERM')
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running 20s after SIGTERM'), 20_000))])
    expect(code).toBe(0)
    expect(out()).toContain('"daemon stopped"')
    // the lock went with it
    const after = once(['--grace', '1h'])
    expect({code: after.code, stderr: after.stderr}).toEqual({code: 0, stderr: ''})
  })
  it('follows containerd events: with a one-hour interval, a task start attaches and an exit releases', async () => {
    const exited = startDaemon('1h')
    const passes = () => out().split('"reconcile pass done"').length - 1
    // the pass at start, and the full pass that follows the subscription to events
    await until('the event subscription and its full pass', () => out().includes('"following containerd events"') && passes() >= 2)
    const before = passes()

    // only the /tasks/start event can bring a pass forward: the next timed one is an hour away
    ctrd.runContainer(NS, 'evented', {labels: {'ctrnet/networks': 'dmnnet'}})
    await until('the attachment of the container started after the first pass', () => cache().includes('dmnnet-dmn-evented-eth0'))
    expect(passes()).toBeGreaterThan(before)
    expect(host.leases('dmnnet').length).toBeGreaterThanOrEqual(1)

    // its init process's exit: released after the grace period (0s here), the label stays
    await ctrd.killTask(NS, 'evented')
    await until('the release of the killed task', () => !cache().includes('dmnnet-dmn-evented-eth0'))
    expect(rulesOf('dmn-evented')).toEqual([])
    expect(ctrd.labels(NS, 'evented')['ctrnet/networks']).toBe('dmnnet')

    daemon!.proc.kill('SIGTERM')
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running 20s after SIGTERM'), 20_000))])
    expect(code).toBe(0)
  })
})
