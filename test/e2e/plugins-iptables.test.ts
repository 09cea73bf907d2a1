/**
 * portmap, firewall and the bridge's masquerade rules against the reference
 * plugins 1.1.1 (/usr/lib/cni), in throwaway namespaces (prefix h3x-).
 *
 * Our code runs inside the throwaway host namespace through a tiny driver
 * (`ip netns exec <ns> node driver.mjs <dist>`), built from src with tsc.
 * Links and addresses come from the reference bridge plugin in both host
 * namespaces (ipMasq off on our side: the masquerade rules are ours).
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

const ROOT = resolve(__dirname, '../..')
const TAG = `${process.pid.toString(36)}`
const NET = 'h3xnet'
const BRIDGE = 'h3xbr'
let tmp = ''
let driver = ''
let DIST = ''
const namespaces: string[] = []

const DRIVER = `
import {readFileSync} from 'node:fs'
import {pathToFileURL} from 'node:url'
import {join} from 'node:path'
const dist = process.argv[2]
const input = JSON.parse(readFileSync(0, 'utf8'))
const load = (rel) => import(pathToFileURL(join(dist, rel)).href)
const ipt = await load('kernel/netfilter/iptables/index.js')
const pmMod = await load('plugins/portmap/index.js')
const fwMod = await load('plugins/firewall/index.js')
const plugins = {portmap: pmMod.default, firewall: fwMod.default}
// the reference-compatible part of each plugin's parse: the variants here are
// compared with the reference plugins, which do not refuse by field name
// (the runtime does, before any plugin runs)
const referenceParse = {portmap: (c, cid) => pmMod.loadPortMapConf(c, cid), firewall: (c) => fwMod.parseFirewallConf(c)}
const {execFileSync} = await import('node:child_process')
const out = []
const lockPath = process.env.CTRNET_IPTABLES_LOCK
/** Runs fn with a firewall transaction of its own, committed when fn succeeds (what the runtime does per chain). */
async function withTx(fn) {
  const nf = new ipt.IptablesFirewall(new ipt.NetfilterTx(lockPath))
  try {
    const r = await fn(nf)
    await nf.commit()
    return r
  } finally {
    nf.release()
  }
}
async function runStep(step, nf) {
    const t0 = performance.now()
    const s0 = ipt.iptablesStats.spawns
    let result
    if (step.plugin === 'batch') {
      // the whole chain in one iptables transaction
      await withTx(async (tx) => { for (const s of step.steps) await runStep(s, tx) })
    } else if (nf) {
      result = await doStep(step, nf)
    } else {
      // a step on its own is one transaction
      result = await withTx((tx) => doStep(step, tx))
    }
    out.push({plugin: step.plugin, command: step.command, ms: performance.now() - t0, spawns: ipt.iptablesStats.spawns - s0, result})
}
async function doStep(step, nf) {
    if (step.plugin === 'race') {
      // a chain appears between our read and our restore: the restore fails, we re-read and re-plan
      let first = true
      await nf.netfilter.plan({families: [4], tables: ['nat']}, (txs) => {
        if (first) execFileSync('iptables', ['-t', 'nat', '-N', step.chain])
        first = false
        txs.get(4).ensureChain('nat', step.chain).appendUnique('nat', step.chain, '-j RETURN')
      })
    } else if (step.plugin === 'ipmasq') {
      const addresses = step.ips?.map((i) => i.address)
      if (step.command === 'ADD') await nf.masquerade({network: step.net, containerId: input.containerId, addresses})
      else await nf.removeMasquerade({network: step.net, containerId: input.containerId, addresses})
    } else {
      const req = {command: step.command, containerId: input.containerId, netns: input.netns ?? '', ifName: 'eth0',
        cniArgs: '', args: [], cniPath: ['/usr/lib/cni'], config: step.config,
        invokeIpam: async () => { throw new Error('no ipam here') }, firewall: nf}
      const p = plugins[step.plugin]
      const conf = referenceParse[step.plugin](step.config, req.containerId)
      return step.command === 'ADD' ? await p.add(req, conf) : step.command === 'DEL' ? await p.del(req, conf) : await p.check(req, conf)
    }
    return undefined
}
try {
  for (const step of input.steps) await runStep(step)
  process.stdout.write(JSON.stringify({ok: true, steps: out, retries: ipt.iptablesStats.retries}))
} catch (err) {
  process.stdout.write(JSON.stringify({ok: false, error: String(err && err.message || err), steps: out}))
  process.exitCode = 1
}
`

function sh(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, {input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe']})
}

const used = new Map<string, number>()
function addNs(role: string): string {
  const n = used.get(role) ?? 0
  used.set(role, n + 1)
  const name = n ? `h3x-${role}${n}-${TAG}` : `h3x-${role}-${TAG}`
  sh('ip', ['netns', 'add', name])
  namespaces.push(name)
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return name
}

interface Driven {
  ok: boolean
  error?: string
  retries?: number
  steps: Array<{plugin: string; command: string; ms: number; spawns: number; result?: unknown}>
}

function drive(hostNs: string, input: Record<string, unknown>): Driven {
  const res = spawnSync('ip', ['netns', 'exec', hostNs, process.execPath, driver, DIST], {input: JSON.stringify(input), encoding: 'utf8'})
  if (!res.stdout) throw new Error(`driver: ${res.stderr}`)
  return JSON.parse(res.stdout) as Driven
}

function driveAsync(hostNs: string, input: Record<string, unknown>): Promise<Driven> {
  return new Promise((resolvePromise) => {
    const child = spawn('ip', ['netns', 'exec', hostNs, process.execPath, driver, DIST])
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('close', () => {
      try {
        resolvePromise(JSON.parse(out) as Driven)
      } catch {
        resolvePromise({ok: false, error: `driver: ${err || out}`, steps: []})
      }
    })
    child.stdin.end(JSON.stringify(input))
  })
}

/** Runs one reference plugin from /usr/lib/cni inside hostNs. */
function refExec(hostNs: string, type: string, command: string, cid: string, netnsPath: string, conf: Record<string, unknown>) {
  const res = spawnSync('ip', ['netns', 'exec', hostNs, `/usr/lib/cni/${type}`], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    env: {...process.env, CNI_COMMAND: command, CNI_CONTAINERID: cid, CNI_NETNS: netnsPath, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni'},
  })
  return {code: res.status, stdout: res.stdout, stderr: res.stderr}
}

/** A result as the reference plugins print it (JSON), enough of it for these tests. */
interface RefResult {
  ips: Array<{address: string; interface?: number; gateway?: string}>
  interfaces?: Array<{name: string; mac?: string; sandbox?: string}>
  [key: string]: unknown
}

function refOk(hostNs: string, type: string, command: string, cid: string, netnsPath: string, conf: Record<string, unknown>): RefResult {
  const r = refExec(hostNs, type, command, cid, netnsPath, conf)
  if (r.code !== 0) throw new Error(`reference ${type} ${command}: ${r.stdout} ${r.stderr}`)
  return (r.stdout ? JSON.parse(r.stdout) : undefined) as RefResult
}

/**
 * iptables-save and ip6tables-save of nat and filter, normalised: no header or
 * comment lines, counters zeroed, tables holding nothing but empty built-in
 * chains dropped (the reference's DEL creates such empty tables as a side
 * effect of `iptables -F` on a missing chain).
 */
/**
 * ctrnet's own per-bridge chains (CTRNET-FORWARD, CTRNET-ACCEPT: exposure and
 * the accepts under a FORWARD policy DROP), which the reference plugins do not
 * have and no DEL removes (network rm does): left out of the comparison with
 * the reference (test/e2e/firewall-exposure.test.ts asserts them).
 */
const CTRNET_OWN = /^(:CTRNET-|-A CTRNET-|-A FORWARD .*-j CTRNET-)/

function tables(ns: string): string {
  const out: string[] = []
  for (const bin of ['iptables-save', 'ip6tables-save']) {
    for (const table of ['filter', 'nat']) {
      const text = sh('ip', ['netns', 'exec', ns, bin, '-t', table])
      const lines = text
        .split('\n')
        .filter((l) => l && !l.startsWith('#') && !CTRNET_OWN.test(l))
        .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
      const meaningful = lines.some((l) => l.startsWith('-A') || (l.startsWith(':') && l.includes(' - ')))
      if (meaningful) out.push(`# ${bin}`, ...lines)
    }
  }
  return out.join('\n')
}

function bridgeConf(ipMasq: boolean, dataDir: string, dual = true) {
  return {
    cniVersion: '1.0.0',
    name: NET,
    type: 'bridge',
    bridge: BRIDGE,
    isGateway: true,
    ipMasq,
    hairpinMode: true,
    ipam: {type: 'host-local', ranges: dual ? [[{subnet: '10.99.0.0/24'}], [{subnet: 'fd99::/64'}]] : [[{subnet: '10.99.0.0/24'}]], dataDir},
  }
}

const MAPPINGS = [
  {hostPort: 8080, containerPort: 80, protocol: 'tcp'},
  {hostPort: 8081, containerPort: 81, protocol: 'tcp', hostIP: '127.0.0.1'},
  {hostPort: 5353, containerPort: 53, protocol: 'udp'},
  {hostPort: 9090, containerPort: 90, protocol: 'tcp', hostIP: '::1'},
]

function portmapConf(prevResult: unknown, mappings: unknown[] | undefined = MAPPINGS) {
  return {
    cniVersion: '1.0.0',
    name: NET,
    type: 'portmap',
    snat: true,
    capabilities: {portMappings: true},
    ...(prevResult ? {prevResult} : {}),
    ...(mappings ? {runtimeConfig: {portMappings: mappings}} : {}),
  }
}

function firewallConf(prevResult: unknown) {
  return {cniVersion: '1.0.0', name: NET, type: 'firewall', ingressPolicy: 'same-bridge', ...(prevResult ? {prevResult} : {})}
}

/** Our ADD of masquerade + portmap + firewall after a bridge ADD (prevResult). */
function ourAddSteps(prev: RefResult) {
  return [
    {plugin: 'ipmasq', command: 'ADD', net: NET, ips: prev.ips},
    {plugin: 'portmap', command: 'ADD', config: portmapConf(prev)},
    {plugin: 'firewall', command: 'ADD', config: firewallConf(prev)},
  ]
}

function ourDelSteps(prev: RefResult, bare = false) {
  return [
    {plugin: 'firewall', command: 'DEL', config: firewallConf(prev)},
    // bare: no portMappings and no prevResult for portmap, no ips for the masquerade
    {plugin: 'portmap', command: 'DEL', config: bare ? portmapConf(undefined, undefined) : portmapConf(prev)},
    {plugin: 'ipmasq', command: 'DEL', net: NET, ...(bare ? {} : {ips: prev.ips})},
  ]
}

function refAdd(hostNs: string, ctrNs: string, cid: string, dataDir: string, dual = true): RefResult {
  const path = `/var/run/netns/${ctrNs}`
  const prev = refOk(hostNs, 'bridge', 'ADD', cid, path, bridgeConf(true, dataDir, dual))
  refOk(hostNs, 'portmap', 'ADD', cid, path, portmapConf(prev))
  refOk(hostNs, 'firewall', 'ADD', cid, path, firewallConf(prev))
  return prev
}

function refDel(hostNs: string, ctrNs: string, cid: string, dataDir: string, prev: RefResult) {
  const path = `/var/run/netns/${ctrNs}`
  refOk(hostNs, 'firewall', 'DEL', cid, path, firewallConf(prev))
  refOk(hostNs, 'portmap', 'DEL', cid, path, portmapConf(prev))
  refOk(hostNs, 'bridge', 'DEL', cid, path, {...bridgeConf(true, dataDir), prevResult: prev})
}

function sysctl(ns: string, key: string): string {
  return sh('ip', ['netns', 'exec', ns, 'sysctl', '-n', key]).trim()
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'h3x-'))
  driver = join(tmp, 'driver.mjs')
  writeFileSync(driver, DRIVER)
  process.env.CTRNET_IPTABLES_LOCK = join(tmp, 'iptables.lock')
  // Our own build (tsc emits even when another file of the tree does not
  // typecheck yet), so that other builds of dist/ cannot race with the test.
  DIST = join(tmp, 'dist')
  writeFileSync(join(tmp, 'package.json'), '{"type": "module"}\n')
  symlinkSync(join(ROOT, 'node_modules'), join(tmp, 'node_modules'))
  spawnSync('npx', ['tsc', '-p', '.', '--outDir', DIST], {cwd: ROOT, encoding: 'utf8'})
})

afterAll(() => {
  for (const ns of namespaces.reverse()) spawnSync('ip', ['netns', 'del', ns])
  if (tmp) rmSync(tmp, {recursive: true, force: true})
})

describe('ADD state equals the reference, cross-DEL leaves the same tables', () => {
  let ours = ''
  let ref = ''
  let base = ''
  let oursPrev: RefResult
  let refPrev: RefResult
  const cid = 'h3xcid1'

  it('ADD: same nat and filter rules (IPv4 and IPv6) and the same route_localnet', () => {
    ours = addNs('ours')
    ref = addNs('ref')
    base = addNs('base')
    const oursC = addNs('oursc')
    const refC = addNs('refc')
    addNs('basec')
    // ours: reference bridge without ipMasq for the links, then our masquerade, portmap, firewall
    oursPrev = refOk(ours, 'bridge', 'ADD', cid, `/var/run/netns/${oursC}`, bridgeConf(false, join(tmp, 'ipam-ours')))
    const d = drive(ours, {containerId: cid, netns: `/var/run/netns/${oursC}`, steps: ourAddSteps(oursPrev)})
    expect(d.error).toBeUndefined()
    expect(d.ok).toBe(true)
    // portmap and firewall return prevResult unchanged
    expect(d.steps[1]!.result).toEqual(oursPrev)
    expect(d.steps[2]!.result).toEqual(oursPrev)
    refPrev = refAdd(ref, refC, cid, join(tmp, 'ipam-ref'))
    expect(oursPrev.ips).toEqual(refPrev.ips)

    const a = tables(ours)
    expect(a).toContain('CNI-DN-')
    expect(a).toContain('CNI-ISOLATION-STAGE-2')
    expect(a).toBe(tables(ref))
    expect(sysctl(ours, `net.ipv4.conf.${BRIDGE}.route_localnet`)).toBe('1')
    expect(sysctl(ours, `net.ipv4.conf.${BRIDGE}.route_localnet`)).toBe(sysctl(ref, `net.ipv4.conf.${BRIDGE}.route_localnet`))

    // a second ADD of the same container changes nothing (everything is unique)
    const again = drive(ours, {containerId: cid, steps: ourAddSteps(oursPrev)})
    expect(again.ok).toBe(true)
    expect(tables(ours)).toBe(a)
  })

  it('CHECK passes after our ADD and after the reference ADD', () => {
    const steps = (prev: RefResult) => [
      {plugin: 'portmap', command: 'CHECK', config: portmapConf(prev)},
      {plugin: 'firewall', command: 'CHECK', config: firewallConf(prev)},
    ]
    expect(drive(ours, {containerId: cid, steps: steps(oursPrev)}).ok).toBe(true)
    expect(drive(ref, {containerId: cid, steps: steps(refPrev)}).ok).toBe(true)
    // the reference CHECK agrees on our state
    const r = refExec(ours, 'firewall', 'CHECK', cid, `/var/run/netns/h3x-oursc-${TAG}`, firewallConf(oursPrev))
    expect(r.stdout + r.stderr).toBe('')
    expect(r.code).toBe(0)
  })

  it('port forward answers: host -> hostIP:hostPort, 127.0.0.1:hostPort -> server in the container', () => {
    const ctr = `h3x-oursc-${TAG}`
    const www = join(tmp, 'www')
    sh('mkdir', ['-p', www])
    writeFileSync(join(www, 'index.html'), 'hello-h3x\n')
    const server = spawn('ip', ['netns', 'exec', ctr, 'busybox', 'httpd', '-f', '-p', '80', '-h', www], {stdio: 'ignore'})
    try {
      // wait until the server listens (no timing assertion: poll)
      for (let i = 0; i < 50; i++) {
        const r = spawnSync('ip', ['netns', 'exec', ctr, 'busybox', 'wget', '-q', '-O', '-', 'http://127.0.0.1:80/index.html'], {encoding: 'utf8'})
        if (r.status === 0) break
        spawnSync('sleep', ['0.1'])
      }
      const viaGw = spawnSync('ip', ['netns', 'exec', ours, 'busybox', 'wget', '-q', '-O', '-', 'http://10.99.0.1:8080/index.html'], {
        encoding: 'utf8',
        timeout: 20_000, // busybox wget -T segfaults (1.35)
      })
      expect(viaGw.stdout).toBe('hello-h3x\n')
      const viaLo = spawnSync('ip', ['netns', 'exec', ours, 'busybox', 'wget', '-q', '-O', '-', 'http://127.0.0.1:8080/index.html'], {
        encoding: 'utf8',
        timeout: 20_000, // busybox wget -T segfaults (1.35)
      })
      expect(viaLo.stdout).toBe('hello-h3x\n')
    } finally {
      server.kill()
    }
  })

  it('cross-DEL: reference DEL after our ADD, our DEL after the reference ADD, and reference ADD+DEL leave the same tables', () => {
    refDel(ours, `h3x-oursc-${TAG}`, cid, join(tmp, 'ipam-ours'), oursPrev)
    // our DEL of the reference ADD, the hard way: portmap and masquerade by name only
    const d = drive(ref, {containerId: cid, netns: '', steps: ourDelSteps(refPrev, true)})
    expect(d.error).toBeUndefined()
    // baseline: the reference alone
    const bPrev = refAdd(base, `h3x-basec-${TAG}`, cid, join(tmp, 'ipam-base'))
    refDel(base, `h3x-basec-${TAG}`, cid, join(tmp, 'ipam-base'), bPrev)

    const after = tables(base)
    expect(after).not.toContain('CNI-DN-')
    expect(after).not.toContain('10.99.0.2/32')
    expect(tables(ours)).toBe(after)
    expect(tables(ref)).toBe(after)
    // DEL is idempotent
    const again = drive(ref, {containerId: cid, steps: ourDelSteps(refPrev)})
    expect(again.ok).toBe(true)
    expect(tables(ref)).toBe(after)
  })
})

describe('IPv4-only container', () => {
  it('our CHECK passes (the reference 1.1.1 fails: plugins#819), and our tables equal the reference', () => {
    const ours = addNs('v4o')
    const ref = addNs('v4r')
    const oc = addNs('v4oc')
    const rc = addNs('v4rc')
    const cid = 'h3xv4'
    const prev = refOk(ours, 'bridge', 'ADD', cid, `/var/run/netns/${oc}`, bridgeConf(false, join(tmp, 'ipam-v4o'), false))
    const steps = [
      ...ourAddSteps(prev),
      {plugin: 'portmap', command: 'CHECK', config: portmapConf(prev)},
      {plugin: 'firewall', command: 'CHECK', config: firewallConf(prev)},
    ]
    const d = drive(ours, {containerId: cid, steps})
    expect(d.error).toBeUndefined()
    const rprev = refAdd(ref, rc, cid, join(tmp, 'ipam-v4r'), false)
    expect(tables(ours)).toBe(tables(ref))
    // for the record: the reference CHECK of the same state fails
    const r = refExec(ref, 'portmap', 'CHECK', cid, `/var/run/netns/${rc}`, portmapConf(rprev))
    expect(r.code).not.toBe(0)
    expect(r.stdout).toMatch(/ipv6 dnat/)

    // once a DNAT rule or a firewall rule is gone, our CHECK says so
    const dn = sh('ip', ['netns', 'exec', ours, 'iptables-save', '-t', 'nat']).split('\n').find((l) => l.includes('-j DNAT'))!
    sh('ip', ['netns', 'exec', ours, 'iptables', '-t', 'nat', ...dn.replace(/^-A/, '-D').split(' ')])
    const c1 = drive(ours, {containerId: cid, steps: [{plugin: 'portmap', command: 'CHECK', config: portmapConf(prev)}]})
    expect(c1.ok).toBe(false)
    expect(c1.error).toMatch(/could not check ipv4 dnat: rule .*DNAT --to-destination/)
    sh('ip', ['netns', 'exec', ours, 'iptables', '-D', 'CNI-FORWARD', '-s', prev.ips[0].address.replace(/\/.*/, '/32'), '-j', 'ACCEPT'])
    const c2 = drive(ours, {containerId: cid, steps: [{plugin: 'firewall', command: 'CHECK', config: firewallConf(prev)}]})
    expect(c2.ok).toBe(false)
    expect(c2.error).toMatch(/expected rule -s 10\.99\.0\.\d+\/32 -j ACCEPT not found/)
  })
})

describe('portmap and firewall config variants equal the reference', () => {
  const prev = {
    cniVersion: '1.0.0',
    interfaces: [{name: BRIDGE}, {name: 'veth0'}, {name: 'eth0', sandbox: '/var/run/netns/fake'}],
    ips: [
      {interface: 2, address: '10.99.0.9/24'},
      {interface: 2, address: 'fd99::9/64'},
    ],
  }
  const many = Array.from({length: 17}, (_, i) => ({hostPort: 30000 + i, containerPort: 80 + i, protocol: 'tcp'}))
  const cases: Array<[string, Record<string, unknown>, unknown[]]> = [
    ['snat off', {snat: false}, MAPPINGS],
    ['markMasqBit 5', {markMasqBit: 5}, MAPPINGS],
    ['externalSetMarkChain', {externalSetMarkChain: 'H3X-MARK'}, MAPPINGS],
    ['conditions', {conditionsV4: ['!', '-d', '192.168.0.0/16'], conditionsV6: ['-m', 'comment', '--comment', 'v6 only']}, MAPPINGS],
    ['17 ports (multiport split), udp+tcp, hostIP ::', {}, [...many, {hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '::'}]],
  ]
  for (const [title, extra, mappings] of cases) {
    it(title, () => {
      const nss = [addNs('var'), addNs('varr')]
      for (const ns of nss) {
        sh('ip', ['-n', ns, 'link', 'add', BRIDGE, 'type', 'bridge'])
        sh('ip', ['-n', ns, 'addr', 'add', '10.99.0.1/24', 'dev', BRIDGE])
        sh('ip', ['-n', ns, 'link', 'set', BRIDGE, 'up'])
        if (extra.externalSetMarkChain) for (const bin of ['iptables', 'ip6tables']) sh('ip', ['netns', 'exec', ns, bin, '-t', 'nat', '-N', 'H3X-MARK'])
      }
      const pm = {...portmapConf(prev, mappings), ...extra}
      const fw = {...firewallConf(prev), ingressPolicy: 'open', backend: 'iptables', iptablesAdminChainName: 'H3X-ADMIN'}
      const d = drive(nss[0]!, {
        containerId: 'h3xv',
        steps: [
          {plugin: 'portmap', command: 'ADD', config: pm},
          {plugin: 'firewall', command: 'ADD', config: fw},
          {plugin: 'portmap', command: 'CHECK', config: pm},
          {plugin: 'firewall', command: 'CHECK', config: fw},
        ],
      })
      expect(d.error).toBeUndefined()
      refOk(nss[1]!, 'portmap', 'ADD', 'h3xv', '/dev/null', pm)
      refOk(nss[1]!, 'firewall', 'ADD', 'h3xv', '/dev/null', fw)
      expect(tables(nss[0]!)).toBe(tables(nss[1]!))
      expect(sysctl(nss[0]!, `net.ipv4.conf.${BRIDGE}.route_localnet`)).toBe(sysctl(nss[1]!, `net.ipv4.conf.${BRIDGE}.route_localnet`))
      // cross-DEL
      expect(drive(nss[1]!, {containerId: 'h3xv', steps: [{plugin: 'firewall', command: 'DEL', config: fw}, {plugin: 'portmap', command: 'DEL', config: pm}]}).error).toBeUndefined()
      refOk(nss[0]!, 'firewall', 'DEL', 'h3xv', '/dev/null', fw)
      refOk(nss[0]!, 'portmap', 'DEL', 'h3xv', '/dev/null', pm)
      expect(tables(nss[0]!)).toBe(tables(nss[1]!))
      expect(tables(nss[0]!)).not.toContain('CNI-DN-')
    })
  }
})

describe('transactions', () => {
  it('a chain created by someone else between read and restore: re-read, re-plan, succeed', () => {
    const host = addNs('race')
    const d = drive(host, {containerId: 'x', steps: [{plugin: 'race', chain: 'H3XRACE'}]})
    expect(d.error).toBeUndefined()
    expect(d.retries).toBe(1)
    const nat = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'])
    expect(nat.split('\n').filter((l) => l.startsWith('-A H3XRACE'))).toEqual(['-A H3XRACE -j RETURN'])
  })

  it('one batch for masquerade + portmap + firewall leaves the same tables as three transactions, with one save and one restore per family', () => {
    const one = addNs('batch1')
    const three = addNs('batch3')
    for (const ns of [one, three]) {
      sh('ip', ['-n', ns, 'link', 'add', BRIDGE, 'type', 'bridge'])
      sh('ip', ['-n', ns, 'addr', 'add', '10.99.0.1/24', 'dev', BRIDGE])
      sh('ip', ['-n', ns, 'link', 'set', BRIDGE, 'up'])
    }
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{name: BRIDGE}, {name: 'veth0'}, {name: 'eth0', sandbox: '/var/run/netns/fake'}],
      ips: [
        {interface: 2, address: '10.99.0.7/24'},
        {interface: 2, address: 'fd99::7/64'},
      ],
    }
    const b = drive(one, {containerId: 'h3xb', steps: [{plugin: 'batch', steps: ourAddSteps(prev)}]})
    expect(b.error).toBeUndefined()
    const t = drive(three, {containerId: 'h3xb', steps: ourAddSteps(prev)})
    expect(t.error).toBeUndefined()
    expect(tables(one)).toBe(tables(three))
    expect(sysctl(one, `net.ipv4.conf.${BRIDGE}.route_localnet`)).toBe('1')
    // lock + one full save per family + one restore per family
    expect(b.steps.at(-1)!.spawns).toBe(5)
    expect(t.steps.reduce((n, s) => n + s.spawns, 0)).toBe(15)
    const bd = drive(one, {containerId: 'h3xb', steps: [{plugin: 'batch', steps: ourDelSteps(prev)}]})
    expect(bd.error).toBeUndefined()
    expect(drive(three, {containerId: 'h3xb', steps: ourDelSteps(prev)}).error).toBeUndefined()
    expect(tables(one)).toBe(tables(three))
    expect(tables(one)).not.toContain('10.99.0.7')
  })
})

describe('concurrency', () => {
  it('20 concurrent ADDs (separate processes), with reference plugins running alongside, never fail and leave 20x the per-container rules', async () => {
    const host = addNs('conc')
    sh('ip', ['-n', host, 'link', 'add', BRIDGE, 'type', 'bridge'])
    sh('ip', ['-n', host, 'addr', 'add', '10.99.0.1/24', 'dev', BRIDGE])
    sh('ip', ['-n', host, 'link', 'set', BRIDGE, 'up'])
    const prevFor = (i: number) => ({
      cniVersion: '1.0.0',
      interfaces: [{name: BRIDGE}, {name: `veth${i}`}, {name: 'eth0', sandbox: `/var/run/netns/fake${i}`}],
      ips: [{interface: 2, address: `10.99.0.${10 + i}/24`, gateway: '10.99.0.1'}],
    })
    /** One reference plugin ADD in the test's host netns: 'ok', or why it failed. */
    const refAdd = (conf: {type: string}, cid: string) =>
      new Promise<string>((res) => {
        const child = spawn('ip', ['netns', 'exec', host, `/usr/lib/cni/${conf.type}`], {
          env: {...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: '/dev/null', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni'},
          stdio: ['pipe', 'pipe', 'pipe'],
        })
        let out = ''
        child.stdout.on('data', (d) => (out += d))
        child.stderr.on('data', (d) => (out += d))
        child.on('close', (code) => res(code === 0 ? 'ok' : `reference ${conf.type} ${cid} exit ${code}: ${out.trim()}`))
        child.stdin.end(JSON.stringify(conf))
      })
    // The shared chains exist before the race, as on any host that has run a
    // container: the reference plugins create a missing chain by check-then-
    // create (ChainExists, then iptables -N), which fails with "File exists"
    // under load when anything else - another reference process or ours -
    // creates it in between. That race is theirs; the one under test is ours.
    const warm = prevFor(200)
    expect(await refAdd(portmapConf(warm, [{hostPort: 30000, containerPort: 80, protocol: 'tcp'}]), 'h3xwarm')).toBe('ok')
    expect(await refAdd(firewallConf(warm), 'h3xwarm')).toBe('ok')
    const ours = Array.from({length: 20}, (_, i) =>
      driveAsync(host, {
        containerId: `h3xc${i}`,
        steps: [
          {plugin: 'ipmasq', command: 'ADD', net: NET, ips: prevFor(i).ips},
          {plugin: 'portmap', command: 'ADD', config: portmapConf(prevFor(i), [{hostPort: 10000 + i, containerPort: 80, protocol: 'tcp'}])},
          {plugin: 'firewall', command: 'ADD', config: firewallConf(prevFor(i))},
        ],
      }),
    )
    // reference portmap + firewall ADDs racing with ours (they do not take our lock)
    const refs = Array.from({length: 4}, (_, i) => {
      const prev = prevFor(100 + i)
      return Promise.all([portmapConf(prev, [{hostPort: 20000 + i, containerPort: 80, protocol: 'tcp'}]), firewallConf(prev)].map((conf) => refAdd(conf, `h3xref${i}`)))
    })
    const results = await Promise.all(ours)
    const refResults = (await Promise.all(refs)).flat()
    for (const r of results) expect(r.error).toBeUndefined()
    // a reference ADD that failed must say why here, not show up as a missing chain below
    expect(refResults).toEqual(refResults.map(() => 'ok'))
    const nat = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'])
    const filter = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'filter'])
    const count = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).length
    const ourCids = Array.from({length: 20}, (_, i) => `h3xc${i}`)
    // per container: one DNAT entry, one DN chain with 3 rules, one masq jump + chain with 2 rules, 2 forward rules
    expect(count(nat, /^-A CNI-HOSTPORT-DNAT .*id: \\"h3xc\d+\\"/)).toBe(20)
    expect(count(nat, /^:CNI-DN-/)).toBe(25) // 20 ours, 4 racing reference ADDs, the warm-up
    expect(count(nat, /^-A CNI-DN-.* --dport 1\d{4} /)).toBe(60)
    expect(count(nat, /^-A POSTROUTING -s 10\.99\.0\.\d+\/32 .*id: \\"h3xc\d+\\"/)).toBe(20)
    expect(count(nat, /^-A CNI-[0-9a-f]{24} .*id: \\"h3xc\d+\\"/)).toBe(40)
    expect(count(filter, /^-A CNI-FORWARD -[ds] 10\.99\.0\.(1\d|2\d)\/32/)).toBe(40)
    for (const c of ourCids) expect(nat).toContain(`id: \\"${c}\\"`)
    // shared rules exist (once from our side; the racing reference may duplicate its own)
    expect(count(nat, /^-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT$/)).toBeGreaterThanOrEqual(1)
    expect(count(filter, /^-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN$/)).toBeGreaterThanOrEqual(1)
  })

  it('20 concurrent ADDs of ours alone leave every shared rule exactly once', async () => {
    const host = addNs('conc2')
    sh('ip', ['-n', host, 'link', 'add', BRIDGE, 'type', 'bridge'])
    sh('ip', ['-n', host, 'addr', 'add', '10.99.0.1/24', 'dev', BRIDGE])
    sh('ip', ['-n', host, 'link', 'set', BRIDGE, 'up'])
    const prevFor = (i: number) => ({
      cniVersion: '1.0.0',
      interfaces: [{name: BRIDGE}, {name: `veth${i}`}, {name: 'eth0', sandbox: `/var/run/netns/fake${i}`}],
      ips: [{interface: 2, address: `10.99.0.${10 + i}/24`}],
    })
    const results = await Promise.all(
      Array.from({length: 20}, (_, i) =>
        driveAsync(host, {
          containerId: `h3xd${i}`,
          steps: [
            {plugin: 'ipmasq', command: 'ADD', net: NET, ips: prevFor(i).ips},
            {plugin: 'portmap', command: 'ADD', config: portmapConf(prevFor(i), [{hostPort: 10000 + i, containerPort: 80, protocol: 'tcp'}])},
            {plugin: 'firewall', command: 'ADD', config: firewallConf(prevFor(i))},
          ],
        }),
      ),
    )
    for (const r of results) expect(r.error).toBeUndefined()
    const nat = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'])
    const filter = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'filter'])
    const count = (text: string, re: RegExp) => text.split('\n').filter((l) => re.test(l)).length
    expect(count(nat, /^-A (PREROUTING|OUTPUT) -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT$/)).toBe(2)
    expect(count(nat, /^-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade"/)).toBe(1)
    expect(count(nat, /^-A CNI-HOSTPORT-DNAT /)).toBe(20)
    expect(count(nat, /^-A CNI-DN-/)).toBe(60)
    expect(count(nat, /^-A POSTROUTING -s /)).toBe(20)
    expect(count(filter, /^-A FORWARD (?!.*-j CTRNET-)/)).toBe(2)
    expect(count(filter, /^-A CNI-FORWARD /)).toBe(41)
    expect(count(filter, /^-A CNI-ISOLATION-STAGE-[12] /)).toBe(4)
    // ctrnet's per-bridge rules (exposure.ts), once each: two jumps, 3 + 3 rules
    expect(count(filter, /^-A FORWARD .*-j CTRNET-/)).toBe(2)
    expect(count(filter, /^-A CTRNET-(FORWARD|ACCEPT) /)).toBe(6)

    // and 20 concurrent DELs take it all back to the shared rules only
    const dels = await Promise.all(
      Array.from({length: 20}, (_, i) =>
        driveAsync(host, {
          containerId: `h3xd${i}`,
          steps: [
            {plugin: 'firewall', command: 'DEL', config: firewallConf(prevFor(i))},
            {plugin: 'portmap', command: 'DEL', config: portmapConf(prevFor(i), [{hostPort: 10000 + i, containerPort: 80, protocol: 'tcp'}])},
            {plugin: 'ipmasq', command: 'DEL', net: NET, ips: prevFor(i).ips},
          ],
        }),
      ),
    )
    for (const r of dels) expect(r.error).toBeUndefined()
    const nat2 = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'nat'])
    const filter2 = sh('ip', ['netns', 'exec', host, 'iptables-save', '-t', 'filter'])
    expect(count(nat2, /^-A CNI-HOSTPORT-DNAT /)).toBe(0)
    expect(count(nat2, /^:CNI-DN-|^:CNI-[0-9a-f]/)).toBe(0)
    expect(count(nat2, /^-A POSTROUTING -s /)).toBe(0)
    expect(count(filter2, /^-A CNI-FORWARD /)).toBe(1)
  })
})
