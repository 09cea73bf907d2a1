// The overlay driver (issue 13) in a lab like test/e2e/overlay.test.ts: an
// underlay netns holding a bridge and a real etcd (Debian's etcd-server, on a
// private data dir, listening on the underlay only), and "hosts" = network
// namespaces joined to that bridge by a veth, each with its own conf dir,
// cache dir and /var/lib (bind-mounted: `ip netns exec <host> sh -c 'mount
// --bind "$0" /var/lib && exec "$@"' ...`). Every name carries a random
// suffix, so runs and e2e tests never collide. Anything that cannot be set
// up throws: the bench fails, it never skips.
//
// 1. "overlay: cni add+del vs bridge": whole `ctrnet cni add` then `ctrnet
//    cni del` processes (node start-up included) on host A, for an overlay
//    network (`network create -d overlay`) and for a bridge network
//    (`network create -d bridge`) in the same host netns, alternating (the
//    order flips every round), one warm-up round each (the first overlay ADD
//    leases A's slice and makes the VXLAN device and the bridge: after it,
//    A holds its lease, the steady state), then the median of ROUNDS rounds.
//    A fresh container netns per round (`unshare -n`, the path handed over as
//    /proc/<pid>/ns/net, as nerdctl does), gone after the round. The timed
//    processes are spawned from a Node process already inside A (netns and
//    mount namespace: this file re-run with --inner), so neither side pays
//    `ip netns exec` + sh + mount in its figure. Goal on the ADD:
//    overlay / bridge <= 1.3. DEL is reported beside it, without a goal.
//    No daemon runs on A during this part. OBX_CPU_PROF=<dir> runs these
//    processes with --cpu-prof into <dir>/<add|del>/<network>/ (the figures
//    then include the profiler's overhead).
//
// 2. "overlay: new host's slice reachable": host A runs `ctrnet daemon`
//    (no containerd: its reconcile passes fail and retry; the overlay part,
//    renewal and the etcd watch, runs) and has a container on the overlay.
//    Per trial a brand-new host netns N joins the underlay, creates the
//    network in its own conf dir and attaches a container with `ctrnet cni
//    add` (run through the `ip netns exec` + mount wrapper: that is included).
//    t0 = just before N's `cni add` is spawned. Once it has returned (its
//    result names the container's address), `busybox ping -i 0.02` runs from
//    A's container to it (respawned should it exit); the time is taken when
//    the first "bytes from <ip>" line reaches this process. So the figure is
//    N's ADD + however long A still needs to learn N's slice (watch -> sync)
//    + at most one ping interval (20 ms) + the RTT. Then N goes: cni del,
//    `network rm` (revokes its lease), netns deleted; the next trial starts
//    once A's daemon has dropped N's route. Every N gets its own underlay
//    address. One warm-up trial, then TRIALS trials; p50 (the row's ms, goal
//    < 1000 ms) and p90 by nearest rank. baselineMs: the median RTT of those
//    first replies (busybox's time=), for scale only; ratio = p50 / 1000.
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const cli = join(root, 'bin', 'run.js')
const ROUNDS = 11
const TRIALS = 9
const GOAL_ADD_RATIO = 1.3
const GOAL_REACH_MS = 1000
const PING_INTERVAL = '0.02'

const OVL = 'ovbnet'
const BR = 'ovbbr'
const VNI = 4711
const SUBNET = '10.231.0.0/16'
const BR_SUBNET = '10.232.0.0/24'
const UNDERLAY = '192.168.251'
const ETCD_IP = `${UNDERLAY}.1`
const ETCD = `http://${ETCD_IP}:2379`

/** p in 0..1, nearest rank */
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * xs.length) - 1)]
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => Number(process.hrtime.bigint()) / 1e6

function sh(file, args) {
  const r = spawnSync(file, args, {encoding: 'utf8', timeout: 120_000})
  if (r.error) throw r.error
  return {code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

function must(file, args) {
  const r = sh(file, args)
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.code}: ${(r.stderr || r.stdout).trim()}`)
  return r.stdout
}

/** Spawns without blocking; resolves with the exit code and output. */
function run(file, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {stdio: ['ignore', 'pipe', 'pipe']})
    const out = []
    const err = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => resolve({code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}))
  })
}

function firstIp(out, what) {
  let res
  try {
    res = JSON.parse(out)
  } catch {
    throw new Error(`${what}: not a CNI result: ${out.slice(0, 200)}`)
  }
  const a = res?.ips?.[0]?.address
  if (!a) throw new Error(`${what}: no address in the result`)
  return a.split('/')[0]
}

/** A "host": a netns on the underlay with its own conf, cache and /var/lib. */
class Host {
  constructor(lab, label, ip) {
    this.lab = lab
    this.name = `obx-${label}-${lab.rnd}`
    this.ip = ip
    this.dir = join(lab.dir, label)
    this.netconf = join(this.dir, 'net.d')
    this.cache = join(this.dir, 'cache')
    this.varlib = join(this.dir, 'varlib')
    this.veth = `u${label}`
    for (const d of [this.netconf, this.cache, join(this.varlib, 'cni'), join(this.dir, 'run')]) mkdirSync(d, {recursive: true})
    lab.netns.push(this.name)
    must('ip', ['netns', 'add', this.name])
    must('ip', ['-n', this.name, 'link', 'set', 'lo', 'up'])
    must('ip', ['-n', lab.under, 'link', 'add', this.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.name])
    must('ip', ['-n', lab.under, 'link', 'set', this.veth, 'master', 'br0', 'up'])
    must('ip', ['-n', this.name, 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    must('ip', ['-n', this.name, 'link', 'set', 'eth0', 'up'])
    must('ip', ['-n', this.name, 'route', 'add', 'default', 'via', ETCD_IP])
    must('ip', ['netns', 'exec', this.name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
  }

  /** argv that runs the CLI inside this host (netns + its /var/lib), with its conf and cache dirs. */
  cliArgv(args) {
    return ['netns', 'exec', this.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', this.varlib, process.execPath, cli, ...args, '--cni-netconfpath', this.netconf, '--cni-cachedir', this.cache]
  }

  cli(args) {
    return must('ip', this.cliArgv(args))
  }

  createOverlay() {
    this.cli(['network', 'create', '-d', 'overlay', '--subnet', SUBNET, '-o', `etcd=${ETCD}`, '-o', `vni=${VNI}`, OVL])
  }

  vxlanRoutes() {
    return must('ip', ['-n', this.name, 'route', 'show', 'dev', `ctrnet.${VNI}`]).trim().split('\n').filter(Boolean)
  }

  remove() {
    sh('ip', ['netns', 'del', this.name])
    this.lab.netns = this.lab.netns.filter((n) => n !== this.name)
    rmSync(this.dir, {recursive: true, force: true})
  }
}

class Lab {
  constructor() {
    this.rnd = randomBytes(3).toString('hex')
    this.under = `obx-u-${this.rnd}`
    this.dir = mkdtempSync(join(tmpdir(), 'obx-bench-'))
    this.netns = []
    this.etcd = undefined
    this.daemon = undefined
  }

  async up() {
    this.netns.push(this.under)
    must('ip', ['netns', 'add', this.under])
    must('ip', ['-n', this.under, 'link', 'set', 'lo', 'up'])
    must('ip', ['-n', this.under, 'link', 'add', 'br0', 'type', 'bridge'])
    must('ip', ['-n', this.under, 'addr', 'add', `${ETCD_IP}/24`, 'dev', 'br0'])
    must('ip', ['-n', this.under, 'link', 'set', 'br0', 'up'])
    await this.startEtcd()
  }

  async startEtcd() {
    const p = spawn(
      'ip',
      [
        'netns', 'exec', this.under, 'etcd',
        '--name', 'obx', '--data-dir', join(this.dir, 'etcd'),
        '--listen-client-urls', ETCD, '--advertise-client-urls', ETCD,
        '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
        '--initial-cluster', 'obx=http://127.0.0.1:2380',
      ],
      {stdio: ['ignore', 'ignore', 'pipe']},
    )
    this.etcd = p
    let log = ''
    p.stderr.on('data', (d) => (log = (log + d).slice(-4000)))
    const spawned = new Promise((resolve, reject) => {
      p.once('spawn', resolve)
      p.once('error', reject)
    })
    await spawned
    const probe = `fetch('${ETCD}/v3/kv/range',{method:'POST',body:'{"key":"AA=="}'}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`
    for (let i = 0; i < 100; i++) {
      if (p.exitCode !== null) throw new Error(`etcd exited with ${p.exitCode}: ${log.trim().split('\n').slice(-5).join(' | ')}`)
      if (sh('ip', ['netns', 'exec', this.under, process.execPath, '-e', probe]).code === 0) return
      await sleep(200)
    }
    throw new Error(`etcd did not answer on ${ETCD} within 20 s: ${log.trim().split('\n').slice(-5).join(' | ')}`)
  }

  /** `ctrnet daemon` on a host, as test/e2e/overlay.test.ts starts it; resolves once it holds the host's slice. */
  async startDaemon(host) {
    const p = spawn(
      'ip',
      ['netns', 'exec', host.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', host.varlib, process.execPath, cli,
        'daemon', '--no-dns', '--run-dir', join(host.dir, 'run'), '--reconcile-interval', '1h', '--log-format', 'json',
        '-a', join(host.dir, 'no-containerd.sock'), '--cni-netconfpath', host.netconf, '--cni-cachedir', host.cache],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    this.daemon = p
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out = (out + d).slice(-20_000)))
    p.stderr.on('data', (d) => (err = (err + d).slice(-4000)))
    const end = Date.now() + 20_000
    while (Date.now() < end) {
      if (p.exitCode !== null) throw new Error(`ctrnet daemon exited with ${p.exitCode}: ${err.trim() || out.trim().slice(-1000)}`)
      if (/"action":"overlay"[^\n]*"slice":/.test(out)) return
      await sleep(50)
    }
    throw new Error(`ctrnet daemon on ${host.name} did not report its overlay slice within 20 s: ${out.trim().slice(-1000)} ${err.trim()}`)
  }

  async down() {
    for (const p of [this.daemon, this.etcd]) {
      if (!p || p.exitCode !== null || p.signalCode !== null) continue
      const exited = new Promise((r) => p.once('exit', r))
      p.kill('SIGTERM')
      const t = setTimeout(() => p.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(t)
    }
    // containers first, the hosts (their bridges, VXLAN devices and rules go with them), the underlay last
    for (const ns of [...this.netns].reverse()) sh('ip', ['netns', 'del', ns])
    this.netns = []
    rmSync(this.dir, {recursive: true, force: true})
  }

  /** A named container netns (removed in down() unless removed before). */
  containerNs(label) {
    const ns = `obx-${label}-${this.rnd}`
    this.netns.push(ns)
    must('ip', ['netns', 'add', ns])
    must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    return ns
  }

  dropNs(ns) {
    sh('ip', ['netns', 'del', ns])
    this.netns = this.netns.filter((n) => n !== ns)
  }
}

// ---- 1. cni add + del, overlay vs bridge, from inside host A ---------------

/** Runs inside host A (netns + mount namespace with A's /var/lib), spawned by addDel(). */
async function inner(opts) {
  const cliRun = async (args) => {
    const t0 = now()
    const prof = process.env.OBX_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', join(process.env.OBX_CPU_PROF, args[1], args[2])] : []
    const r = await run(process.execPath, [...prof, cli, ...args, '--cni-netconfpath', opts.netconf, '--cni-cachedir', opts.cache])
    const ms = now() - t0
    if (r.code !== 0) throw new Error(`ctrnet ${args.slice(0, 3).join(' ')}: exit ${r.code}: ${r.stderr.trim()}`)
    return {ms, stdout: r.stdout}
  }
  /** A fresh netns held by a process of its own; its path is /proc/<pid>/ns/net. */
  const holder = () =>
    new Promise((resolve, reject) => {
      const p = spawn('unshare', ['-n', 'sh', '-c', 'echo ready; exec sleep 600'], {stdio: ['ignore', 'pipe', 'inherit']})
      p.on('error', reject)
      p.once('exit', (code) => reject(new Error(`unshare -n exited with ${code} before it was ready`)))
      p.stdout.once('data', () => resolve(p))
    })
  const once = async (net, i) => {
    const p = await holder()
    try {
      const netns = `/proc/${p.pid}/ns/net`
      const id = `obx-${net}-${i}`
      const add = await cliRun(['cni', 'add', net, netns, '--container-id', id])
      firstIp(add.stdout, `cni add on ${net}`)
      const del = await cliRun(['cni', 'del', net, netns, '--container-id', id])
      return {add: add.ms, del: del.ms}
    } finally {
      p.removeAllListeners('exit')
      const gone = new Promise((r) => p.once('exit', r))
      p.kill('SIGKILL')
      await gone
    }
  }
  // warm-up: the first overlay ADD leases A's slice and makes the device and the bridge
  await once(OVL, 'w')
  await once(BR, 'w')
  const ms = {[OVL]: {add: [], del: []}, [BR]: {add: [], del: []}}
  for (let i = 0; i < opts.rounds; i++) {
    const order = i % 2 ? [BR, OVL] : [OVL, BR]
    for (const net of order) {
      const r = await once(net, i)
      ms[net].add.push(r.add)
      ms[net].del.push(r.del)
    }
  }
  return ms
}

async function addDel(lab, a) {
  a.createOverlay()
  a.cli(['network', 'create', '-d', 'bridge', '--subnet', BR_SUBNET, BR])
  const opts = {netconf: a.netconf, cache: a.cache, rounds: ROUNDS}
  const r = await run('ip', ['netns', 'exec', a.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', a.varlib, process.execPath, here, '--inner', JSON.stringify(opts)])
  if (r.code !== 0) throw new Error(`overlay bench (inside host A): exit ${r.code}: ${r.stderr.trim()}`)
  const ms = JSON.parse(r.stdout)
  process.stderr.write(
    `bench overlay: ADD ms overlay [${ms[OVL].add.map((x) => x.toFixed(0)).join(' ')}] bridge [${ms[BR].add.map((x) => x.toFixed(0)).join(' ')}]\n` +
      `bench overlay: DEL ms overlay [${ms[OVL].del.map((x) => x.toFixed(0)).join(' ')}] bridge [${ms[BR].del.map((x) => x.toFixed(0)).join(' ')}]\n`,
  )
  const add = {base: median(ms[BR].add), ms: median(ms[OVL].add)}
  const del = {base: median(ms[BR].del), ms: median(ms[OVL].del)}
  return [
    {name: `overlay: cni add+del vs bridge: ADD (whole process, median of ${ROUNDS})`, baselineMs: add.base, ms: add.ms, ratio: add.ms / add.base, goal: GOAL_ADD_RATIO},
    {name: `  overlay: DEL (whole process, median of ${ROUNDS}) vs bridge`, baselineMs: del.base, ms: del.ms, ratio: del.ms / del.base},
  ]
}

// ---- 2. a new host's slice reachable from A --------------------------------

/**
 * Pings ip from netns `from` every PING_INTERVAL s until the first reply;
 * resolves with the time it was read and busybox's RTT. Respawns ping if it
 * exits (busybox ping dies on a send error); rejects after ms.
 */
function firstReply(from, ip, ms) {
  return new Promise((resolve, reject) => {
    let child
    let done = false
    let tries = 0
    const timer = setTimeout(() => finish(new Error(`no ping reply from ${ip} within ${ms} ms (${tries} ping processes)`)), ms)
    const finish = (err, val) => {
      if (done) return
      done = true
      clearTimeout(timer)
      child?.kill('SIGKILL')
      if (err) reject(err)
      else resolve(val)
    }
    const start = () => {
      if (done) return
      tries++
      child = spawn('ip', ['netns', 'exec', from, 'busybox', 'ping', '-i', PING_INTERVAL, ip], {stdio: ['ignore', 'pipe', 'ignore']})
      let buf = ''
      child.stdout.on('data', (d) => {
        const t = now()
        buf += d
        const m = new RegExp(`bytes from ${ip.replace(/\./g, '\\.')}: .*time=([0-9.]+) ms`).exec(buf)
        if (m) finish(undefined, {t, rtt: Number(m[1])})
      })
      child.on('error', (err) => finish(err))
      child.on('exit', () => setTimeout(start, 10))
    }
    start()
  })
}

async function until(what, cond, ms) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return
    await sleep(50)
  }
  throw new Error(`not within ${ms} ms: ${what}`)
}

async function reach(lab, a) {
  const actr = lab.containerNs('ac')
  a.cli(['cni', 'add', OVL, `/var/run/netns/${actr}`, '--container-id', actr])
  await lab.startDaemon(a)

  const reachMs = []
  const addMs = []
  const rtts = []
  for (let i = 0; i <= TRIALS; i++) {
    const n = new Host(lab, `n${i}`, `${UNDERLAY}.${20 + i}`)
    n.createOverlay()
    const nctr = lab.containerNs(`nc${i}`)
    const t0 = now()
    const r = await run('ip', n.cliArgv(['cni', 'add', OVL, `/var/run/netns/${nctr}`, '--container-id', nctr]))
    const tAdd = now()
    if (r.code !== 0) throw new Error(`cni add on new host ${n.name}: exit ${r.code}: ${r.stderr.trim()}`)
    const ip = firstIp(r.stdout, `cni add on ${n.name}`)
    const {t, rtt} = await firstReply(actr, ip, 15_000)
    if (i > 0) {
      reachMs.push(t - t0)
      addMs.push(tAdd - t0)
      rtts.push(rtt)
    }
    process.stderr.write(`bench overlay: ${i ? `trial ${i}` : 'warm-up'}: N's cni add ${(tAdd - t0).toFixed(0)} ms, first reply from ${ip} at ${(t - t0).toFixed(0)} ms (rtt ${rtt} ms)\n`)
    // N leaves: its slice is given back; A's daemon drops the route before the next trial
    const slice = ip.split('.').slice(0, 3).join('.') + '.0/24'
    n.cli(['cni', 'del', OVL, `/var/run/netns/${nctr}`, '--container-id', nctr])
    n.cli(['network', 'rm', OVL])
    lab.dropNs(nctr)
    n.remove()
    await until(`A drops ${slice} after ${n.name} left`, () => !a.vxlanRoutes().some((l) => l.startsWith(slice)), 10_000)
  }
  const p50 = median(reachMs)
  const p90 = pct(reachMs, 0.9)
  return [
    {
      name: `overlay: new host's slice reachable: N's cni add -> A pings N, p50 of ${TRIALS} (p90 ${p90.toFixed(0)} ms; baseline: ping RTT)`,
      baselineMs: median(rtts),
      ms: p50,
      ratio: p50 / GOAL_REACH_MS,
      goalMs: GOAL_REACH_MS,
    },
    {name: `  of which N's cni add (ip netns exec + mount + node), p50; ratio: ms / ${GOAL_REACH_MS}`, baselineMs: 0, ms: median(addMs), ratio: median(addMs) / GOAL_REACH_MS},
  ]
}

export default async function bench() {
  const lab = new Lab()
  try {
    await lab.up()
    const a = new Host(lab, 'a', `${UNDERLAY}.2`)
    const rows = await addDel(lab, a)
    rows.push(...(await reach(lab, a)))
    return rows
  } finally {
    await lab.down()
  }
}

if (process.argv[2] === '--inner') {
  inner(JSON.parse(process.argv[3])).then(
    (out) => process.stdout.write(JSON.stringify(out) + '\n'),
    (err) => {
      process.stderr.write(`overlay bench (inner): ${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
