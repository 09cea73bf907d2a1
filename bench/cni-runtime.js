// The embedded CNI runtime against the reference plugins (/usr/lib/cni), for
// nerdctl's default chain (bridge + host-local, portmap, firewall, tuning) with
// one port mapping, in a throwaway host netns:
//  (a) in-process ADD+DEL (dist/cni/runtime.js) vs the reference plugins exec'd
//      from the same process, libcni-style; goal ratio <= 0.1
//  (b) whole `ctrnet cni add` + `ctrnet cni del` (two processes, start-up
//      included) vs the time the reference plugins spend in their execs; goal <= 0.5
//  (c) in-process ADD+DEL of the same chain on the nftables backend (bridge
//      ipMasqBackend, portmap backend), vs the reference (whose 1.1.1 here has
//      iptables only) and vs ctrnet's iptables backend
// Alternating, median of ROUNDS rounds after one warm-up round each.
//
// The default export creates the namespaces and re-runs this file as
// `ip netns exec <host> node bench/cni-runtime.js --inner ...` (the runtime
// works on the netns of its own process), then parses the JSON it prints.
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {median, sh} from './_lib.js'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const cli = join(root, 'bin', 'run.js')
const REF = '/usr/lib/cni'
const ROUNDS = 9
const NET = 'h5xbench'

export {median}

export default async function bench() {
  const rnd = randomBytes(3).toString('hex')
  const host = `h5x-bench-${rnd}`
  const cns = `h5x-benchc-${rnd}`
  const dir = mkdtempSync(join(tmpdir(), 'h5x-bench-'))
  try {
    sh('ip', ['netns', 'add', host])
    sh('ip', ['netns', 'add', cns])
    sh('ip', ['-n', host, 'link', 'set', 'lo', 'up'])
    const out = await new Promise((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', host, process.execPath, here, '--inner', cns, dir], {stdio: ['ignore', 'pipe', 'inherit']})
      const chunks = []
      child.stdout.on('data', (d) => chunks.push(d))
      child.on('error', reject)
      child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`inner bench exited ${code}`))))
    })
    return JSON.parse(out)
  } finally {
    spawnSync('ip', ['netns', 'del', cns])
    spawnSync('ip', ['netns', 'del', host])
    rmSync(dir, {recursive: true, force: true})
  }
}

// ---- inner: runs inside the host netns -----------------------------------

function conflist(dataDir) {
  return {
    cniVersion: '1.0.0',
    name: NET,
    plugins: [
      {
        type: 'bridge',
        bridge: 'h5x-br0',
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {dataDir, ranges: [[{gateway: '10.4.1.1', subnet: '10.4.1.0/24'}]], routes: [{dst: '0.0.0.0/0'}], type: 'host-local'},
      },
      {type: 'portmap', capabilities: {portMappings: true}},
      {type: 'firewall', ingressPolicy: 'same-bridge'},
      {type: 'tuning'},
    ],
  }
}

/** Execs one reference plugin directly (we are already in the host netns); returns its ms and result. */
export function execPlugin(type, command, rt, conf) {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      CNI_COMMAND: command,
      CNI_CONTAINERID: rt.containerId,
      CNI_NETNS: rt.netns,
      CNI_IFNAME: rt.ifName,
      CNI_ARGS: rt.args.map(([k, v]) => `${k}=${v}`).join(';'),
      CNI_PATH: REF,
    }
    const t0 = process.hrtime.bigint()
    const child = spawn(join(REF, type), [], {env, stdio: ['pipe', 'pipe', 'pipe']})
    const out = []
    const err = []
    child.stdout.on('data', (d) => out.push(d))
    child.stderr.on('data', (d) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      const stdout = Buffer.concat(out).toString()
      if (code !== 0) return reject(new Error(`reference ${type} ${command}: exit ${code}: ${stdout}${Buffer.concat(err)}`))
      resolve({ms, result: stdout.trim() ? JSON.parse(stdout) : undefined})
    })
    child.stdin.end(JSON.stringify(conf))
  })
}

/** libcni's per-plugin config: name, cniVersion, prevResult, runtimeConfig from capabilities. */
export function pluginConf(list, p, rt, prev) {
  const conf = {...p, name: list.name, cniVersion: list.cniVersion}
  if (prev) conf.prevResult = prev
  const rc = {}
  for (const [cap, on] of Object.entries(p.capabilities ?? {})) if (on && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap]
  if (Object.keys(rc).length) conf.runtimeConfig = rc
  return conf
}

/**
 * Reference ADD then DEL of the chain, libcni-style (one exec per plugin, in
 * order, from this process, in its netns); returns wall ms (total, ADD, DEL)
 * and the ms spent in plugin execs. bench/daemon.js uses it too.
 */
export async function referenceAddDel(list, rt) {
  const t0 = process.hrtime.bigint()
  let execMs = 0
  let prev
  for (const p of list.plugins) {
    const r = await execPlugin(p.type, 'ADD', rt, pluginConf(list, p, rt, prev))
    execMs += r.ms
    prev = r.result
  }
  if (!prev?.ips?.length) throw new Error('reference ADD gave no address')
  const t1 = process.hrtime.bigint()
  for (const p of [...list.plugins].reverse()) {
    execMs += (await execPlugin(p.type, 'DEL', rt, pluginConf(list, p, rt, prev))).ms
  }
  const t2 = process.hrtime.bigint()
  return {ms: Number(t2 - t0) / 1e6, addMs: Number(t1 - t0) / 1e6, delMs: Number(t2 - t1) / 1e6, execMs}
}

function cliRun(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
    const err = []
    child.stdout.resume()
    child.stderr.on('data', (d) => err.push(d))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ctrnet ${args.slice(0, 2).join(' ')}: exit ${code}: ${Buffer.concat(err)}`))))
  })
}

async function inner(cns, dir) {
  const {loadConfFile} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'loader.js')).href)
  const {CniRuntime} = await import(pathToFileURL(join(root, 'dist', 'libcni', 'runtime.js')).href)
  const confDir = join(dir, 'net.d')
  const cacheDir = join(dir, 'cache')
  mkdirSync(confDir, {recursive: true})
  const list = conflist(join(dir, 'ipam'))
  const file = join(confDir, `${NET}.conflist`)
  writeFileSync(file, JSON.stringify(list, null, 2))
  const loaded = loadConfFile(file)
  // the same chain on the nftables backend (the reference fields), its own bridge and subnet
  const nftList = conflist(join(dir, 'ipam-nft'))
  nftList.name = `${NET}nft`
  nftList.plugins[0] = {...nftList.plugins[0], bridge: 'h5x-br1', ipMasqBackend: 'nftables', ipam: {...nftList.plugins[0].ipam, ranges: [[{gateway: '10.4.2.1', subnet: '10.4.2.0/24'}]]}}
  nftList.plugins[1] = {...nftList.plugins[1], backend: 'nftables'}
  const nftFile = join(confDir, `${NET}nft.conflist`)
  writeFileSync(nftFile, JSON.stringify(nftList, null, 2))
  const nftLoaded = loadConfFile(nftFile)
  const runtime = new CniRuntime({cniPath: [REF], cacheDir, mode: 'embedded'})
  const containerId = `default-${randomBytes(32).toString('hex')}`
  const rt = {
    containerId,
    netns: `/var/run/netns/${cns}`,
    ifName: 'eth0',
    args: [['IgnoreUnknown', '1']],
    capabilityArgs: {portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}]},
  }
  const cliArgs = (cmd) => [
    'cni',
    cmd,
    NET,
    rt.netns,
    '--container-id',
    containerId,
    '--cni-netconfpath',
    confDir,
    '--cni-cachedir',
    cacheDir,
    '--cni-path',
    REF,
    '--cni-mode',
    'embedded',
    '--cni-args',
    'IgnoreUnknown=1',
    '-p',
    '8080:80/tcp',
  ]

  const ours = async () => {
    const t0 = process.hrtime.bigint()
    const res = await runtime.addNetworkList(loaded, rt)
    if (!res?.ips?.length) throw new Error('ctrnet ADD gave no address')
    const t1 = process.hrtime.bigint()
    await runtime.delNetworkList(loaded, rt)
    const t2 = process.hrtime.bigint()
    return {ms: Number(t2 - t0) / 1e6, addMs: Number(t1 - t0) / 1e6, delMs: Number(t2 - t1) / 1e6}
  }
  const oursNft = async () => {
    const t0 = process.hrtime.bigint()
    const res = await runtime.addNetworkList(nftLoaded, rt)
    if (!res?.ips?.length) throw new Error('ctrnet ADD (nftables) gave no address')
    await runtime.delNetworkList(nftLoaded, rt)
    return Number(process.hrtime.bigint() - t0) / 1e6
  }
  const wholeCli = async () => {
    const t0 = process.hrtime.bigint()
    await cliRun(cliArgs('add'))
    await cliRun(cliArgs('del'))
    return Number(process.hrtime.bigint() - t0) / 1e6
  }

  // Warm-up: the first ADD creates the bridge and the shared iptables chains.
  await referenceAddDel(list, rt)
  await ours()
  await oursNft()
  await wholeCli()

  const refMs = []
  const refAddMs = []
  const refDelMs = []
  const refExecMs = []
  const oursMs = []
  const oursAddMs = []
  const oursDelMs = []
  const cliMs = []
  const nftMs = []
  for (let i = 0; i < ROUNDS; i++) {
    const steps = [
      async () => {
        const r = await referenceAddDel(list, rt)
        refMs.push(r.ms)
        refAddMs.push(r.addMs)
        refDelMs.push(r.delMs)
        refExecMs.push(r.execMs)
      },
      async () => {
        const r = await ours()
        oursMs.push(r.ms)
        oursAddMs.push(r.addMs)
        oursDelMs.push(r.delMs)
      },
      async () => cliMs.push(await wholeCli()),
      async () => nftMs.push(await oursNft()),
    ]
    // Alternate the order so neither side always runs on a warmer cache.
    if (i % 2) steps.reverse()
    for (const s of steps) await s()
  }
  const a = {base: median(refMs), ms: median(oursMs)}
  const b = {base: median(refExecMs), ms: median(cliMs)}
  return [
    {
      name: `cni ADD+DEL in-process vs reference execs (nerdctl chain, 1 port, median of ${ROUNDS})`,
      baselineMs: a.base,
      ms: a.ms,
      ratio: a.ms / a.base,
      goal: 0.1,
    },
    {name: '  of which ADD (in-process vs reference)', baselineMs: median(refAddMs), ms: median(oursAddMs), ratio: median(oursAddMs) / median(refAddMs)},
    {name: '  of which DEL (in-process vs reference)', baselineMs: median(refDelMs), ms: median(oursDelMs), ratio: median(oursDelMs) / median(refDelMs)},
    {
      name: `cni ADD+DEL in-process, nftables backend vs reference execs (iptables; median of ${ROUNDS})`,
      baselineMs: a.base,
      ms: median(nftMs),
      ratio: median(nftMs) / a.base,
    },
    {name: '  nftables vs iptables backend, in-process ADD+DEL', baselineMs: a.ms, ms: median(nftMs), ratio: median(nftMs) / a.ms},
    {
      name: `ctrnet cni add + cni del (2 processes) vs reference plugin exec time (median of ${ROUNDS})`,
      baselineMs: b.base,
      ms: b.ms,
      ratio: b.ms / b.base,
      goal: 0.5,
    },
  ]
}

if (process.argv[2] === '--inner') {
  inner(process.argv[3], process.argv[4]).then(
    (rows) => process.stdout.write(JSON.stringify(rows) + '\n'),
    (err) => {
      process.stderr.write(`cni-runtime bench: ${err?.stack ?? err}\n`)
      process.exit(1)
    },
  )
}
