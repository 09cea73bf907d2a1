// Published ports on a busy host (issue 22): the in-process ADD of nerdctl's
// default chain (bridge + host-local, portmap, firewall, tuning) with 32
// published ports, on a host that already has FEW such containers vs MANY,
// per firewall backend. The cost of a port must not grow with the host: goal
// for nftables <= 1.1 (published ports are elements added to the kernel's
// tables, never a read and rewrite of them).
//
// One throwaway host netns per backend, FEW (10) then MANY (200) containers
// attached (each its own netns, 32 ports each, distinct host ports); at each
// level a fresh process adds and deletes the probe container ROUNDS times,
// median of the ADD times after one warm-up. Baseline column: ADD with FEW; ctrnet column:
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

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const REF = '/usr/lib/cni'
const PORTS = 32
const FEW = 10
const MANY = 200
const ROUNDS = 7
const BACKENDS = ['iptables', 'nftables']

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function sh(file, args) {
  const r = spawnSync(file, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** One backend's run, in its own host netns; the containers' netns are made (and removed) here. */
async function runBackend(backend, rnd) {
  const host = `bpt-h-${backend.slice(0, 3)}-${rnd}`
  const cns = Array.from({length: MANY + 1}, (_, i) => `bpt-${backend.slice(0, 3)}-${rnd}-${i}`)
  const dir = mkdtempSync(join(tmpdir(), 'bpt-'))
  const made = []
  try {
    sh('ip', ['netns', 'add', host])
    made.push(host)
    sh('ip', ['-n', host, 'link', 'set', 'lo', 'up'])
    // one `ip -batch` for the containers' namespaces
    const batch = cns.map((n) => `netns add ${n}`).join('\n') + '\n'
    const r = spawnSync('ip', ['-batch', '-'], {input: batch, encoding: 'utf8'})
    made.push(...cns)
    if (r.status !== 0) throw new Error(`ip -batch: ${r.stderr}`)
    // each step a fresh process in the host netns: filling, then measuring, so that the measuring
    // process is the same at both levels (a process that made 200 ADDs forks its children slower)
    const step = (...args) =>
      new Promise((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', host, process.execPath, here, '--inner', backend, dir, JSON.stringify(cns), ...args], {stdio: ['ignore', 'pipe', 'inherit']})
        const chunks = []
        child.stdout.on('data', (d) => chunks.push(d))
        child.on('error', reject)
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(Buffer.concat(chunks).toString() || 'null')) : reject(new Error(`inner bench (${backend} ${args.join(' ')}) exited ${code}`))))
      })
    await step('fill', '0', String(FEW))
    const few = await step('measure')
    process.stderr.write(`bench ports (${backend}): ADD with ${FEW} containers ${few.toFixed(1)} ms; filling to ${MANY} ...\n`)
    await step('fill', String(FEW), String(MANY))
    const many = await step('measure')
    process.stderr.write(`bench ports (${backend}): ADD with ${MANY} containers ${many.toFixed(1)} ms\n`)
    return {few, many}
  } finally {
    if (made.length) spawnSync('ip', ['-batch', '-'], {input: made.map((n) => `netns del ${n}`).join('\n') + '\n'})
    rmSync(dir, {recursive: true, force: true})
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

async function inner(backend, dir, cns, what, from, to) {
  const {loadConfFile} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'loader.js')).href)
  const {CniRuntime} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'runtime.js')).href)
  const confDir = join(dir, 'net.d')
  const file = join(confDir, 'bptnet.conflist')
  if (what === 'fill' && from === 0) {
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
    // the filler containers take netns 0..MANY-1, host ports from 20000
    for (let i = from; i < to; i++) await runtime.addNetworkList(loaded, rtOf(i, 20000 + i * PORTS))
    return null
  }
  // the probe is the last netns, host ports from 10000
  const probe = rtOf(MANY, 10000)
  const adds = []
  for (let i = 0; i <= ROUNDS; i++) {
    const t0 = process.hrtime.bigint()
    const res = await runtime.addNetworkList(loaded, probe)
    const t1 = process.hrtime.bigint()
    if (!res?.ips?.length) throw new Error('ADD gave no address')
    await runtime.delNetworkList(loaded, probe)
    if (i > 0) adds.push(Number(t1 - t0) / 1e6)
  }
  // the host netns goes with its rules; the cache and IPAM dirs with the temp dir
  return median(adds)
}

if (process.argv[2] === '--inner') {
  inner(process.argv[3], process.argv[4], JSON.parse(process.argv[5]), process.argv[6], Number(process.argv[7] ?? 0), Number(process.argv[8] ?? 0)).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err) => {
      process.stderr.write(`ports bench: ${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
