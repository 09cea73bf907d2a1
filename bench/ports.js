// Published ports on a busy host (issue 22): the in-process ADD of nerdctl's
// default chain (bridge + host-local, portmap, firewall, tuning) with 32
// published ports, on a host that already has FEW such containers vs MANY,
// per firewall backend. The cost of a port must not grow with the host: goal
// for nftables <= 1.1 (published ports are elements added to the kernel's
// tables, never a read and rewrite of them).
//
// Per backend, two throwaway host netns, one with FEW (10) and one with MANY
// (200) containers attached (each its own netns, 32 ports each, distinct host
// ports); then, in turn on each, a fresh process adds and deletes the probe
// container twice and reports the second ADD; median of ROUNDS turns. Baseline column: ADD with FEW; ctrnet column:
// ADD with MANY. A backend the host lacks the programs of fails the bench.
//
// The default export creates the namespaces and re-runs this file as
// `ip netns exec <host> node bench/ports.js --inner ...` (the runtime works on
// the netns of its own process), then parses the JSON it prints.
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {median, sh} from './_lib.js'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const REF = '/usr/lib/cni'
const PORTS = 32
const FEW = 10
const MANY = 200
const ROUNDS = 9
const BACKENDS = ['iptables', 'nftables']


/** One host netns with its own dirs and `count` containers attached (each its own netns). */
function hostOf(backend, level, rnd) {
  const tag = `bpt-${backend.slice(0, 3)}${level}-${rnd}`
  return {name: tag, dir: mkdtempSync(join(tmpdir(), 'bpt-')), cns: Array.from({length: level + 1}, (_, i) => `${tag}-${i}`)}
}

/** A fresh process in the host's netns: `fill` or `measure` (see inner). */
function step(backend, h, ...args) {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', h.name, process.execPath, here, '--inner', backend, h.dir, JSON.stringify(h.cns), ...args], {stdio: ['ignore', 'pipe', 'inherit']})
    const chunks = []
    child.stdout.on('data', (d) => chunks.push(d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(Buffer.concat(chunks).toString() || 'null')) : reject(new Error(`inner bench (${backend} ${args.join(' ')}) exited ${code}`))))
  })
}

/**
 * One backend: a host netns with FEW containers and one with MANY, both
 * filled first; then the probe's ADD is measured on each in turn, ROUNDS
 * times, each time in a fresh process (a process that made 200 ADDs forks
 * its children slower), so that a change of the machine's load hits both.
 */
async function runBackend(backend, rnd) {
  const hosts = [hostOf(backend, FEW, rnd), hostOf(backend, MANY, rnd)]
  const made = []
  try {
    for (const h of hosts) {
      sh('ip', ['netns', 'add', h.name])
      made.push(h.name)
      sh('ip', ['-n', h.name, 'link', 'set', 'lo', 'up'])
      // one `ip -batch` for the containers' namespaces
      const r = spawnSync('ip', ['-batch', '-'], {input: h.cns.map((n) => `netns add ${n}`).join('\n') + '\n', encoding: 'utf8'})
      made.push(...h.cns)
      if (r.status !== 0) throw new Error(`ip -batch: ${r.stderr}`)
      await step(backend, h, 'fill', String(h.cns.length - 1))
    }
    const few = []
    const many = []
    for (let i = 0; i < ROUNDS; i++) {
      few.push(await step(backend, hosts[0], 'measure'))
      many.push(await step(backend, hosts[1], 'measure'))
    }
    process.stderr.write(`bench ports (${backend}): ADD with ${FEW} containers ${median(few).toFixed(1)} ms, with ${MANY} ${median(many).toFixed(1)} ms\n`)
    return {few: median(few), many: median(many)}
  } finally {
    if (made.length) spawnSync('ip', ['-batch', '-'], {input: made.map((n) => `netns del ${n}`).join('\n') + '\n'})
    for (const h of hosts) rmSync(h.dir, {recursive: true, force: true})
  }
}

export default async function bench() {
  const rnd = randomBytes(2).toString('hex')
  const rows = []
  for (const backend of BACKENDS) {
    const r = await runBackend(backend, rnd)
    rows.push({
      name: `ADD, ${PORTS} published ports: host with ${MANY} such containers vs with ${FEW} (${backend}, median of ${ROUNDS})`,
      baselineMs: r.few,
      ms: r.many,
      ratio: r.many / r.few,
      ...(backend === 'nftables' ? {goal: 1.1} : {}),
    })
  }
  return rows
}

// ---- inner: runs inside the host netns -----------------------------------

function conflist(backend, dataDir) {
  return {
    cniVersion: '1.0.0',
    name: 'bptnet',
    plugins: [
      {
        type: 'bridge',
        bridge: 'bpt-br0',
        isGateway: true,
        ipMasq: true,
        ipMasqBackend: backend,
        hairpinMode: true,
        ipam: {dataDir, ranges: [[{gateway: '10.6.0.1', subnet: '10.6.0.0/20'}]], routes: [{dst: '0.0.0.0/0'}], type: 'host-local'},
      },
      {type: 'portmap', backend, capabilities: {portMappings: true}},
      {type: 'firewall', ingressPolicy: 'same-bridge'},
      {type: 'tuning'},
    ],
  }
}

async function inner(backend, dir, cns, what, count) {
  const {loadConfFile} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'loader.js')).href)
  const {CniRuntime} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'runtime.js')).href)
  const confDir = join(dir, 'net.d')
  const file = join(confDir, 'bptnet.conflist')
  if (what === 'fill') {
    mkdirSync(confDir, {recursive: true})
    writeFileSync(file, JSON.stringify(conflist(backend, join(dir, 'ipam')), null, 2))
  }
  const loaded = loadConfFile(file)
  const runtime = new CniRuntime({cniPath: [REF], cacheDir: join(dir, 'cache'), mode: 'embedded'})
  const rtOf = (i, firstPort) => ({
    containerId: `bench-${i}-${randomBytes(8).toString('hex')}`,
    netns: `/var/run/netns/${cns[i]}`,
    ifName: 'eth0',
    args: [['IgnoreUnknown', '1']],
    capabilityArgs: {portMappings: Array.from({length: PORTS}, (_, j) => ({hostPort: firstPort + j, containerPort: 80 + j, protocol: j % 4 === 3 ? 'udp' : 'tcp'}))},
  })
  if (what === 'fill') {
    // the filler containers take netns 0..count-1, host ports from 20000
    for (let i = 0; i < count; i++) await runtime.addNetworkList(loaded, rtOf(i, 20000 + i * PORTS))
    return null
  }
  // the probe is the last netns, host ports from 10000: one warm-up ADD+DEL, then the one measured
  const probe = rtOf(cns.length - 1, 10000)
  let ms = 0
  for (let i = 0; i < 2; i++) {
    const t0 = process.hrtime.bigint()
    const res = await runtime.addNetworkList(loaded, probe)
    ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (!res?.ips?.length) throw new Error('ADD gave no address')
    await runtime.delNetworkList(loaded, probe)
  }
  // the host netns goes with its rules; the cache and IPAM dirs with the temp dir
  return ms
}

if (process.argv[2] === '--inner') {
  inner(process.argv[3], process.argv[4], JSON.parse(process.argv[5]), process.argv[6], Number(process.argv[7] ?? 0)).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err) => {
      process.stderr.write(`ports bench: ${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
