// `ctrnet daemon` (issue 11) against a private containerd, in a throwaway host
// netns, on one network of nerdctl's default chain (bridge + host-local,
// portmap, firewall, tuning), every container with one published port. The
// daemon runs with --reconcile-interval 1h --grace 0s: only containerd's
// events bring its passes forward.
//
// Times, all on the host's wall clock (containerd's and the daemon's):
//  - attach: from the envelope timestamp of containerd's /tasks/start event
//    of the container to the `time` of the daemon's log line
//    {action: "attach", outcome: "ok"} for it (written once attachNetwork has
//    returned: cache entry written, journal entry gone). 20 containers, one at
//    a time, after 2 of warm-up; p50 and p95 by nearest rank.
//  - release: from the /tasks/exit event of its init process (`ctr task kill
//    -s SIGKILL`) to the daemon's {action: "release", outcome: "ok"} line
//    (grace 0 s, so no waiting is counted). Same 20 containers.
//  - of which the attach itself: the `ms` of those attach lines (the daemon's
//    time in attachNetwork: the in-process ADD, cache entry); the rest of the
//    attach time is the event's delivery and the reconcile pass around it.
//  - baseline, in the same run: the reference plugins (/usr/lib/cni) exec'd
//    libcni-style from a Node process in the host netns (bench/cni-runtime.js's
//    referenceAddDel), ADD and DEL of the same conflist with one port mapping,
//    into a throwaway netns; median of 9 after one warm-up.
//  - 50 containers started at once (50 concurrent `ctr run -d`): wall time
//    from their launch to the 50th attach line; baseline: from the launch to
//    the 50th /tasks/start event (what containerd itself took).
//  - daemon RSS (VmRSS of its node process): 10 containers, each cycled
//    (`ctr task rm -f`, released, `ctr task start`, attached) 100 times, 10 at
//    a time; read after cycle 100 and after cycle 1000, the daemon idle
//    (median of 5 reads over 2 s). Cycles counted from the start of this
//    phase (the 72 containers before it were attached and released once).
//    The daemon's throughput sets the pace, about 1 cycle/s on a 2-core
//    machine at load average 6 (100 cycles in 93-117 s), 0.77/s at load 12
//    (1000 in 1305 s): this phase is the long one (`node bench/run.js cni`
//    skips this file).
//
// The private containerd, the host netns and the daemon fixture are the e2e
// harness's (test/e2e/containerd-harness.ts, daemon-lib.ts), compiled here
// with esbuild into a temp dir.
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {build} from 'esbuild'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const NS = 'dmb'
const NET = 'dmbnet'
const SAMPLES = 20
const WARMUP = 2
const AT_ONCE = 50
const CYCLERS = 10
const CYCLES_EACH = 100
const REF_ROUNDS = 9

/** p in 0..1, nearest rank */
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * xs.length) - 1)]
const median = (xs) => pct(xs, 0.5)

/** The e2e harness, compiled (it is TypeScript); the CLI it runs is this checkout's. */
async function harness(dir) {
  const outfile = join(dir, 'harness.mjs')
  await build({
    stdin: {contents: "export * from './containerd-harness.ts'\nexport * from './daemon-lib.ts'\n", resolveDir: join(root, 'test', 'e2e'), loader: 'ts'},
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'silent',
  })
  process.env.CTRNET_TEST_CLI ??= join(root, 'bin', 'run.js')
  return import(pathToFileURL(outfile).href)
}

function ctr(ctrd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', ['-a', ctrd.address, '-n', NS, ...args], {stdio: ['ignore', 'ignore', 'pipe']})
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ctr ${args.join(' ')}: exit ${code}: ${err.trim()}`))))
  })
}

/** The daemon's JSON log lines as they come, per container: the times of its attach and release lines (and their `ms`). */
class DaemonLog {
  constructor(stream) {
    this.attached = new Map()
    this.released = new Map()
    this.attachMs = new Map()
    this.failed = []
    this.passes = 0
    this.checks = new Set()
    let rest = ''
    stream.on('data', (d) => {
      const parts = (rest + d.toString()).split('\n')
      rest = parts.pop()
      for (const p of parts) if (p.trim()) this.line(JSON.parse(p))
      for (const c of [...this.checks]) c()
    })
  }

  line(l) {
    const t = Date.parse(l.time)
    const push = (m) => (m.get(l.container) ?? m.set(l.container, []).get(l.container)).push(t)
    if (l.action === 'attach' && l.outcome === 'ok') {
      push(this.attached)
      ;(this.attachMs.get(l.container) ?? this.attachMs.set(l.container, []).get(l.container)).push(l.ms)
    } else if (l.action === 'release' && l.outcome === 'ok') push(this.released)
    else if (l.outcome === 'failed') this.failed.push(`${l.action} ${l.container}: ${l.reason}`)
    if (l.msg === 'reconcile pass done') this.passes++
  }

  count(m, id) {
    return m.get(id)?.length ?? 0
  }

  /** Resolves when ok() holds after a log line (or now); rejects after ms. */
  until(what, ok, ms = 60_000) {
    return new Promise((resolve, reject) => {
      if (ok()) return resolve()
      const timer = setTimeout(() => {
        this.checks.delete(check)
        reject(new Error(`${what}: not seen within ${ms / 1000}s (failures: ${this.failed.slice(-5).join('; ')})`))
      }, ms)
      const check = () => {
        if (!ok()) return
        clearTimeout(timer)
        this.checks.delete(check)
        resolve()
      }
      this.checks.add(check)
    })
  }
}

/** containerd's /tasks/start and /tasks/exit (init process) events of NS: container id -> envelope timestamps (ms). */
async function followEvents(ctrd, signal) {
  const {ContainerdClient} = await import(pathToFileURL(join(root, 'dist', 'containerd', 'client.js')).href)
  const client = await ContainerdClient.connect({address: ctrd.address, namespace: NS, timeoutMs: 10_000})
  const seen = {start: new Map(), exit: new Map(), checks: new Set(), error: undefined}
  const events = client.subscribe(['topic=="/tasks/start"', 'topic=="/tasks/exit"'], signal)[Symbol.asyncIterator]()
  const first = events.next()
  const loop = (async () => {
    for (let r = await first; !r.done; r = await events.next()) {
      const {event, namespace, timestamp} = r.value
      if (namespace !== NS || !event) continue
      const m = event.type === 'TaskStart' ? seen.start : event.type === 'TaskExit' && event.id === event.containerId ? seen.exit : undefined
      if (!m) continue
      ;(m.get(event.containerId) ?? m.set(event.containerId, []).get(event.containerId)).push(timestamp.getTime())
      for (const c of [...seen.checks]) c()
    }
  })().catch((err) => {
    // a broken stream: the next eventAfter() says so
    seen.error = err
    for (const c of [...seen.checks]) c()
  })
  return {seen, loop, close: () => client.close()}
}

/** Waits until events of `kind` for `id` number more than n; returns the last one's time. */
function eventAfter(seen, kind, id, n, ms = 30_000) {
  const m = seen[kind]
  return new Promise((resolve, reject) => {
    const ok = () => (m.get(id)?.length ?? 0) > n
    if (ok()) return resolve(m.get(id).at(-1))
    const timer = setTimeout(() => reject(new Error(`no ${kind} event of ${id} within ${ms / 1000}s`)), ms)
    const check = () => {
      if (seen.error) {
        clearTimeout(timer)
        seen.checks.delete(check)
        return reject(new Error(`containerd events: ${seen.error.message}`))
      }
      if (!ok()) return
      clearTimeout(timer)
      seen.checks.delete(check)
      resolve(m.get(id).at(-1))
    }
    seen.checks.add(check)
  })
}

function rssKb(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1])
}

async function idleRssMb(pid) {
  const reads = []
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 400))
    reads.push(rssKb(pid))
  }
  return median(reads) / 1024
}

/** Reference ADD/DEL of the network's conflist in the host netns (a child: `ip netns exec`). */
function reference(host, confFile) {
  const cns = `dmb-ref-${randomBytes(3).toString('hex')}`
  spawnSync('ip', ['netns', 'add', cns])
  try {
    const r = spawnSync('ip', ['netns', 'exec', host.name, process.execPath, here, '--ref', confFile, cns], {encoding: 'utf8', timeout: 300_000})
    if (r.status !== 0) throw new Error(`reference plugins: exit ${r.status}: ${r.stderr}`)
    return JSON.parse(r.stdout)
  } finally {
    spawnSync('ip', ['netns', 'del', cns])
  }
}

async function refInner(confFile, cns) {
  const {referenceAddDel} = await import('./cni-runtime.js')
  const list = JSON.parse(readFileSync(confFile, 'utf8'))
  const rt = {
    containerId: `${NS}-ref${randomBytes(8).toString('hex')}`,
    netns: `/var/run/netns/${cns}`,
    ifName: 'eth0',
    args: [['IgnoreUnknown', '1']],
    capabilityArgs: {portMappings: [{hostPort: 18999, containerPort: 80, protocol: 'tcp'}]},
  }
  await referenceAddDel(list, rt) // warm-up: the bridge and the shared chains
  const add = []
  const del = []
  for (let i = 0; i < REF_ROUNDS; i++) {
    const r = await referenceAddDel(list, rt)
    add.push(r.addMs)
    del.push(r.delMs)
  }
  return {addMs: median(add), delMs: median(del), plugins: list.plugins.map((p) => p.type)}
}

export default async function bench() {
  const tmp = mkdtempSync(join(tmpdir(), 'dmb-bench-'))
  const {PrivateContainerd, HostNs, DaemonFixture} = await harness(tmp)
  const ctrd = new PrivateContainerd('dmb')
  let host
  let daemon
  const stopEvents = new AbortController()
  let events
  try {
    await ctrd.start()
    host = new HostNs('dmb')
    const runDir = join(host.dir, 'run')
    mkdirSync(runDir)
    const d = new DaemonFixture(ctrd, host, NS, runDir)
    host.createNetwork(NET, ['--subnet', '10.47.0.0/24'], NS)

    process.stderr.write('bench daemon: reference plugins ...\n')
    const ref = reference(host, host.confPath(NET, NS))

    let port = 19000
    const rootfs = new Map()
    const make = (id) => rootfs.set(id, ctrd.makeRootfs(`${NS}-${id}`))
    const run = (id) =>
      ctr(ctrd, ['run', '-d', '--null-io', '--env', 'PATH=/bin', '--label', `ctrnet/networks=${NET}`, '--label', `ctrnet/publish=${port++}:80`, '--rootfs', rootfs.get(id), id, 'sleep', '86400'])

    // subscribed well before the first container: the daemon's start and first passes take longer than containerd's answer
    events = await followEvents(ctrd, stopEvents.signal)
    daemon = d.start(['--reconcile-interval', '1h', '--grace', '0s'])
    const log = new DaemonLog(daemon.proc.stdout)
    await log.until('the daemon following events, and its first passes', () => daemon.out().includes('"following containerd events"') && log.passes >= 2)
    const pid = daemon.proc.pid
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
    if (comm !== 'node') throw new Error(`the daemon's pid ${pid} is ${comm}, not node`)

    // 1. one at a time: start -> attached, kill -> released, remove
    process.stderr.write(`bench daemon: ${WARMUP} + ${SAMPLES} containers one at a time ...\n`)
    const attachMs = []
    const releaseMs = []
    const addInDaemonMs = []
    for (let i = 0; i < WARMUP + SAMPLES; i++) {
      const id = `seq${i}`
      make(id)
      await run(id)
      const tStart = await eventAfter(events.seen, 'start', id, 0)
      await log.until(`attach of ${id}`, () => log.count(log.attached, id) > 0)
      await ctr(ctrd, ['task', 'kill', '-s', 'SIGKILL', id])
      const tExit = await eventAfter(events.seen, 'exit', id, 0)
      await log.until(`release of ${id}`, () => log.count(log.released, id) > 0)
      if (i >= WARMUP) {
        attachMs.push(log.attached.get(id)[0] - tStart)
        releaseMs.push(log.released.get(id)[0] - tExit)
        addInDaemonMs.push(log.attachMs.get(id)[0])
      }
      ctrd.removeContainer(NS, id)
    }

    // 2. 50 at once
    process.stderr.write(`bench daemon: ${AT_ONCE} containers at once ...\n`)
    const many = Array.from({length: AT_ONCE}, (_, i) => `many${i}`)
    many.forEach(make)
    const t0 = Date.now()
    await Promise.all(many.map(run))
    const starts = await Promise.all(many.map((id) => eventAfter(events.seen, 'start', id, 0)))
    await log.until(`attach of the ${AT_ONCE}`, () => many.every((id) => log.count(log.attached, id) > 0), 300_000)
    const lastStart = Math.max(...starts) - t0
    const lastAttach = Math.max(...many.map((id) => log.attached.get(id)[0])) - t0
    for (const id of many) await ctr(ctrd, ['task', 'kill', '-s', 'SIGKILL', id])
    await log.until(`release of the ${AT_ONCE}`, () => many.every((id) => log.count(log.released, id) > 0), 300_000)
    for (const id of many) ctrd.removeContainer(NS, id)

    // 3. RSS over attach/release cycles
    process.stderr.write(`bench daemon: ${CYCLERS} x ${CYCLES_EACH} attach/release cycles ...\n`)
    const cyclers = Array.from({length: CYCLERS}, (_, i) => `cyc${i}`)
    cyclers.forEach(make)
    await Promise.all(cyclers.map(run))
    await log.until('the cycling containers attached', () => cyclers.every((id) => log.count(log.attached, id) > 0), 120_000)
    const cycle = async (id) => {
      const released = log.count(log.released, id)
      const attached = log.count(log.attached, id)
      await ctr(ctrd, ['task', 'rm', '-f', id])
      await log.until(`release of ${id}`, () => log.count(log.released, id) > released)
      await ctr(ctrd, ['task', 'start', '-d', '--null-io', id])
      await log.until(`attach of ${id}`, () => log.count(log.attached, id) > attached)
    }
    const cycles = async (n) => Promise.all(cyclers.map(async (id) => {
      for (let i = 0; i < n; i++) await cycle(id)
    }))
    const c0 = Date.now()
    await cycles(CYCLES_EACH / 10)
    const rss100 = await idleRssMb(pid)
    process.stderr.write(`bench daemon: ${CYCLERS * (CYCLES_EACH / 10)} cycles in ${((Date.now() - c0) / 1000).toFixed(0)} s, RSS ${rss100.toFixed(1)} MB\n`)
    await cycles(CYCLES_EACH - CYCLES_EACH / 10)
    const cyclesMs = Date.now() - c0
    const rss1000 = await idleRssMb(pid)
    const total = CYCLERS * CYCLES_EACH
    if (log.failed.length > 0) process.stderr.write(`bench daemon: ${log.failed.length} failed actions, e.g. ${log.failed.slice(0, 3).join('; ')}\n`)
    process.stderr.write(`bench daemon: ${total} cycles in ${(cyclesMs / 1000).toFixed(0)} s; RSS ${rss100.toFixed(1)} MB -> ${rss1000.toFixed(1)} MB; ${log.passes} passes\n`)

    const p50a = median(attachMs)
    const p95a = pct(attachMs, 0.95)
    const p50r = median(releaseMs)
    const p95r = pct(releaseMs, 0.95)
    const chain = ref.plugins.join('+')
    return [
      {name: `daemon attach p50: /tasks/start event -> attached (${SAMPLES} containers) vs reference ADD (${chain}, 1 port)`, baselineMs: ref.addMs, ms: p50a, ratio: p50a / ref.addMs, goal: 0.3},
      {name: '  attach p95 vs reference ADD', baselineMs: ref.addMs, ms: p95a, ratio: p95a / ref.addMs},
      {name: "  of which the ADD itself, p50 (the attach line's ms) vs reference ADD", baselineMs: ref.addMs, ms: median(addInDaemonMs), ratio: median(addInDaemonMs) / ref.addMs},
      {name: `daemon release p50: init /tasks/exit event -> released (grace 0) vs reference DEL`, baselineMs: ref.delMs, ms: p50r, ratio: p50r / ref.delMs},
      {name: '  release p95 vs reference DEL', baselineMs: ref.delMs, ms: p95r, ratio: p95r / ref.delMs},
      {name: `daemon: ${AT_ONCE} containers started at once, launch -> all attached vs launch -> containerd's last task start`, baselineMs: lastStart, ms: lastAttach, ratio: lastAttach / lastStart},
      {name: `daemon RSS, MB (not ms): after ${total} vs after ${total / 10} attach/release cycles`, baselineMs: rss100, ms: rss1000, ratio: rss1000 / rss100, goal: 1.1},
    ]
  } finally {
    stopEvents.abort()
    events?.close()
    await daemon?.killHard()
    await ctrd.stop()
    host?.cleanup()
    rmSync(tmp, {recursive: true, force: true})
  }
}

if (process.argv[2] === '--ref') {
  refInner(process.argv[3], process.argv[4]).then(
    (out) => process.stdout.write(JSON.stringify(out) + '\n'),
    (err) => {
      process.stderr.write(`daemon bench (reference): ${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
