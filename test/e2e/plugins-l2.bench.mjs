// Benchmark (not a test): bridge+host-local ADD+DEL in-process vs the reference
// plugins exec'd, median of N rounds, inside throwaway namespaces. Each round runs
// both sides; even rounds ours first, odd rounds the reference first.
// Run as root from the repo: npx tsc -p . ; node test/e2e/plugins-l2.bench.mjs [rounds] [ipMasq]
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

const rounds = Number(process.argv[2] ?? 9)
const ipMasq = process.argv[3] === 'ipMasq'
if (process.argv[2] === '--child') {
  // inside the throwaway host namespace
  const [, , , dist, netns, dir, n, masq] = process.argv
  const {pathToFileURL} = await import('node:url')
  // count every process we start (ip, nsenter, flock, iptables, nft ...)
  const cp = (await import('node:child_process')).default
  const {syncBuiltinESMExports} = await import('node:module')
  const origSpawn = cp.spawn
  const spawned = {n: 0, names: {}}
  cp.spawn = function (file, ...rest) { spawned.n++; spawned.names[file] = (spawned.names[file] ?? 0) + 1; return origSpawn.call(this, file, ...rest) }
  syncBuiltinESMExports()
  const {embeddedPlugin} = await import(pathToFileURL(join(dist, 'plugins/registry/index.js')).href)
  const {iptablesBackend} = await import(pathToFileURL(join(dist, 'kernel/netfilter/iptables/index.js')).href)
  // one firewall transaction per plugin command, committed when it succeeded (as the runtime does)
  const viaTx = async (fn) => {
    const nf = iptablesBackend.open()
    try {
      const out = await fn(nf)
      await nf.commit()
      return out
    } finally {
      nf.release()
    }
  }
  const br = embeddedPlugin('bridge')
  const hl = embeddedPlugin('host-local')
  const conf = (ipam) => ({cniVersion: '1.0.0', name: 'h2xbench', type: 'bridge', bridge: 'h2xbr0', isGateway: true, ipMasq: masq === '1', hairpinMode: true,
    ipam: {type: 'host-local', ranges: [[{subnet: '10.73.0.0/24', gateway: '10.73.0.1'}]], routes: [{dst: '0.0.0.0/0'}], dataDir: ipam}})
  // each plugin parses its config once per request, as the runtime has it do
  const parse = (p, command, config, cid) => p.parse(config, 'plugins[0]', {command, containerId: cid, ifName: 'eth0', args: []})
  const req = (command, config, cid, firewall) => ({command, containerId: cid, netns, ifName: 'eth0', cniArgs: '', args: [], cniPath: ['/usr/lib/cni'], config, firewall,
    invokeIpam: async (c) => {
      const r = req(c, config, cid, firewall)
      const hc = parse(hl, c, config, cid)
      return c === 'ADD' ? hl.add(r, hc) : c === 'DEL' ? void (await hl.del(r, hc)) : hl.check(r, hc)
    }})
  const brAdd = (config, cid, nf) => br.add(req('ADD', config, cid, nf), parse(br, 'ADD', config, cid))
  const brDel = (config, cid, nf) => br.del(req('DEL', config, cid, nf), parse(br, 'DEL', config, cid))
  const exec = (command, cid, cf) => new Promise((res, rej) => {
    const ch = origSpawn('/usr/lib/cni/bridge', [], {env: {...process.env, CNI_COMMAND: command, CNI_CONTAINERID: cid, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni'}})
    let out = ''
    ch.stdout.on('data', (d) => (out += d))
    ch.on('close', (code) => (code === 0 ? res(out) : rej(new Error(out))))
    ch.stdin.end(JSON.stringify(cf))
  })
  const refAdd = [], refDel = []
  const ours = [], refs = [], addT = [], delT = [], spawnsAdd = [], spawnsDel = []
  // warm up both (module loading, page cache), and let the bridge + gateway exist
  { const r = await viaTx((nf) => brAdd(conf(join(dir, 'o')), 'w1', nf)); await viaTx((nf) => brDel({...conf(join(dir, 'o')), prevResult: r}, 'w1', nf)) }
  { const cf = conf(join(dir, 'r')); const out = await exec('ADD', 'w2', cf); await exec('DEL', 'w2', {...cf, prevResult: JSON.parse(out)}) }
  // One side each; each records into its own arrays, whichever order it runs in.
  // Only runOurs spawns through the counted cp.spawn (the reference uses origSpawn).
  const runOurs = async (i) => {
    const t = performance.now()
    const s0 = spawned.n
    const r = await viaTx((nf) => brAdd(conf(join(dir, 'o')), `o${i}`, nf))
    const t1 = performance.now()
    const s1 = spawned.n
    await viaTx((nf) => brDel({...conf(join(dir, 'o')), prevResult: r}, `o${i}`, nf))
    const t2 = performance.now()
    ours.push(t2 - t); addT.push(t1 - t); delT.push(t2 - t1); spawnsAdd.push(s1 - s0); spawnsDel.push(spawned.n - s1)
  }
  const runRef = async (i) => {
    const t = performance.now()
    const cf = conf(join(dir, 'r'))
    const out = await exec('ADD', `r${i}`, cf)
    const tr = performance.now()
    await exec('DEL', `r${i}`, {...cf, prevResult: JSON.parse(out)})
    const t2 = performance.now()
    refs.push(t2 - t); refAdd.push(tr - t); refDel.push(t2 - tr)
  }
  // alternate who goes first, so neither side always runs right after the other's DEL
  const order = []
  for (let i = 0; i < Number(n); i++) {
    const first = i % 2 === 0 ? 'ours' : 'ref'
    order.push(first)
    if (first === 'ours') { await runOurs(i); await runRef(i) } else { await runRef(i); await runOurs(i) }
  }
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]
  if (ours.length !== Number(n) || refs.length !== Number(n)) throw new Error(`rounds recorded: ours ${ours.length}, ref ${refs.length}, expected ${n}`)
  // per side, the median ADD+DEL when it ran first and when it ran second (round i is ours[i] / refs[i])
  const at = (a, who) => a.filter((_, i) => order[i] === who)
  const byPosition = {
    ours: {first: med(at(ours, 'ours')), second: med(at(ours, 'ref'))},
    ref: {first: med(at(refs, 'ref')), second: med(at(refs, 'ours'))},
  }
  const firstCount = {ours: order.filter((f) => f === 'ours').length, ref: order.filter((f) => f === 'ref').length}
  console.log(JSON.stringify({rounds: Number(n), ipMasq: masq === '1', firstCount, byPosition, oursAddDelMs: med(ours), oursAddMs: med(addT), oursDelMs: med(delT),
    refAddDelMs: med(refs), refAddMs: med(refAdd), refDelMs: med(refDel), ratio: +(med(ours) / med(refs)).toFixed(3), spawnsPerAdd: med(spawnsAdd), spawnsPerDel: med(spawnsDel), byProgram: spawned.names}))
  process.exit(0)
}
const root = resolve(new URL('.', import.meta.url).pathname, '../..')
const tag = process.pid.toString(36)
const h = `h2x-bh-${tag}`, c = `h2x-bc-${tag}`
const dir = mkdtempSync(join(tmpdir(), 'h2x-bench-'))
execFileSync('ip', ['netns', 'add', h]); execFileSync('ip', ['netns', 'add', c])
try {
  const out = execFileSync('ip', ['netns', 'exec', h, process.execPath, new URL(import.meta.url).pathname, '--child', join(root, 'dist'), `/var/run/netns/${c}`, dir, String(rounds), ipMasq ? '1' : '0'], {encoding: 'utf8'})
  process.stdout.write(out)
} finally {
  execFileSync('ip', ['netns', 'del', c]); execFileSync('ip', ['netns', 'del', h]); rmSync(dir, {recursive: true, force: true})
}
