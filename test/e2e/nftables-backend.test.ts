/**
 * The nftables firewall backend (src/kernel/netfilter/nftables/) against a
 * real nft and real traffic, in throwaway namespaces built by hand:
 *
 *   out (192.0.2.2, 2001:db8::2) --- host (192.0.2.1, 2001:db8::1)
 *                                     nbr1 10.77.0.1/24 fd77::1/64: c1 (.2, ::2), c2 (.3, ::3)
 *                                     nbr2 10.78.0.1/24:            c3 (.2)
 *
 * Our code runs inside the host namespace through a tiny driver
 * (`ip netns exec <host> node driver.mjs <dist>`), built from src with tsc,
 * which drives the backend directly (open, masquerade / publishPorts /
 * acceptForwarding, commit). Assertions: `nft list ruleset` in the host
 * namespace, and TCP connections between the namespaces (a node server in
 * the container answers with the peer address it sees).
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetns, ipIn, linkNetns, nsExec, nsSpawn, useNetnsCleanup} from '../helpers/netns.js'

useNetnsCleanup(afterAll)

const DIST = resolve(__dirname, '../../dist')
let tmp = ''
let driver = ''
let server = ''
let client = ''
let host = ''
let out = ''
let c1 = ''
let c2 = ''
let c3 = ''
const stops: Array<() => void> = []

const DRIVER = `
import {readFileSync} from 'node:fs'
import {pathToFileURL} from 'node:url'
import {join} from 'node:path'
const dist = process.argv[2]
const m = await import(pathToFileURL(join(dist, 'kernel/netfilter/nftables/index.js')).href)
const input = JSON.parse(readFileSync(0, 'utf8'))
const lockPath = input.lockPath
const res = []
try {
  for (const tx of input.txs) {
    if (tx.removeBridge) { await m.nftablesBackend.removeBridge(tx.removeBridge, {lockPath}); continue }
    const s0 = m.nftStats.spawns
    const i0 = m.nftStats.iptables
    const t0 = performance.now()
    const fw = m.nftablesBackend.open({lockPath})
    try {
      for (const [op, ...args] of tx.ops) await fw[op](...args)
      const script = fw.script()
      await fw.commit()
      res.push({spawns: m.nftStats.spawns - s0, ipt: m.nftStats.iptables - i0, ms: performance.now() - t0, lines: script.split('\\n').length})
    } finally { fw.release() }
  }
  process.stdout.write(JSON.stringify({ok: true, res}))
} catch (err) {
  process.stdout.write(JSON.stringify({ok: false, error: String(err && err.message || err), res}))
  process.exitCode = 1
}
`

// answers every connection with the address it comes from
const SERVER = `
const net = require('node:net')
net.createServer((s) => { s.end(s.remoteAddress.replace(/^::ffff:/, '')) }).listen(Number(process.argv[2]), '::')
`
const CLIENT = `
const net = require('node:net')
const [host, port] = [process.argv[2], Number(process.argv[3])]
const s = net.connect({host, port, timeout: 1500})
let data = ''
s.on('data', (d) => (data += d))
s.on('end', () => { process.stdout.write(data); process.exit(0) })
s.on('timeout', () => { process.stdout.write('TIMEOUT'); process.exit(0) })
s.on('error', (e) => { process.stdout.write('ERROR ' + e.code); process.exit(0) })
`

interface Driven {
  ok: boolean
  error?: string
  res: Array<{spawns: number; ipt: number; ms: number; lines: number}>
}

type Op = [string, ...unknown[]]
function drive(txs: Array<{ops: Op[]} | {removeBridge: string}>): Driven {
  const r = spawnSync('ip', ['netns', 'exec', host, process.execPath, driver, DIST], {
    input: JSON.stringify({lockPath: join(tmp, 'nft.lock'), txs}),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (!r.stdout) throw new Error(`driver: ${r.stderr}`)
  const d = JSON.parse(r.stdout) as Driven
  if (!d.ok) throw new Error(`driver: ${d.error}`)
  return d
}

async function ruleset(): Promise<string> {
  return (await nsExec(host, ['nft', 'list', 'ruleset'])).stdout
}

async function connect(from: string, to: string, port: number): Promise<string> {
  return (await nsExec(from, [process.execPath, client, to, String(port)])).stdout.trim()
}

async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await nsExec(ns, ['sysctl', '-qw', `${key}=${value}`])
}

/** A container namespace on `bridge`: veth <hostIf> in the host, eth0 inside. */
async function container(tag: string, bridge: string, hostIf: string, addrs: string[], gws: string[]): Promise<string> {
  const ns = await createNetns('h22n', tag)
  await linkNetns(host, hostIf, [], ns, 'eth0', addrs)
  await ipIn(host, ['link', 'set', hostIf, 'master', bridge])
  // as the bridge plugin's hairpinMode: a container reaches itself through its published port
  await ipIn(host, ['link', 'set', hostIf, 'type', 'bridge_slave', 'hairpin', 'on'])
  for (const gw of gws) await ipIn(ns, [...(gw.includes(':') ? ['-6'] : []), 'route', 'add', 'default', 'via', gw])
  return ns
}

const POLICY = {adminChain: 'CNI-ADMIN', isolation: 'bridge', exposure: 'published'}
const C1 = {v4: '10.77.0.2/24', v6: 'fd77::2/64'}
const PORTS = [
  {hostPort: 8080, containerPort: 80, protocol: 'tcp'},
  {hostPort: 8443, containerPort: 80, protocol: 'tcp', hostIP: '192.0.2.1'},
  {hostPort: 5353, containerPort: 53, protocol: 'udp'},
]

function addOps(cid: string, v4: string, v6: string | undefined, bridge: string, policy = POLICY, ports = PORTS): Op[] {
  const addresses = v6 ? [v4, v6] : [v4]
  return [
    ['masquerade', {network: `net-${bridge}`, containerId: cid, ifName: 'eth0', addresses}],
    ['publishPorts', {network: `net-${bridge}`, containerId: cid, ports, addresses: {4: v4, ...(v6 ? {6: v6} : {})}, hairpinMasquerade: {kind: 'mark', bit: 13}}],
    ['acceptForwarding', policy, {addresses, bridge}],
  ]
}

function delOps(cid: string, v4: string, v6: string | undefined, bridge: string): Op[] {
  const addresses = v6 ? [v4, v6] : [v4]
  return [
    ['removeMasquerade', {network: `net-${bridge}`, containerId: cid, ifName: 'eth0'}],
    ['unpublishPorts', {network: `net-${bridge}`, containerId: cid, families: [4, 6]}],
    ['removeForwarding', {addresses, bridge}],
  ]
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'h22nft-'))
  driver = join(tmp, 'driver.mjs')
  server = join(tmp, 'server.cjs')
  client = join(tmp, 'client.cjs')
  writeFileSync(driver, DRIVER)
  writeFileSync(server, SERVER)
  writeFileSync(client, CLIENT)
  host = await createNetns('h22n', 'host')
  out = await createNetns('h22n', 'out')
  await linkNetns(host, 'uplink', ['192.0.2.1/24', '2001:db8::1/64'], out, 'eth0', ['192.0.2.2/24', '2001:db8::2/64'])
  for (const [br, a4, a6] of [
    ['nbr1', '10.77.0.1/24', 'fd77::1/64'],
    ['nbr2', '10.78.0.1/24', undefined],
  ] as const) {
    await ipIn(host, ['link', 'add', br, 'type', 'bridge'])
    await ipIn(host, ['addr', 'add', a4, 'dev', br])
    if (a6) await ipIn(host, ['addr', 'add', a6, 'dev', br, 'nodad'])
    await ipIn(host, ['link', 'set', br, 'up'])
  }
  await sysctl(host, 'net.ipv4.ip_forward', '1')
  await sysctl(host, 'net.ipv6.conf.all.forwarding', '1')
  c1 = await container('c1', 'nbr1', 'vc1', ['10.77.0.2/24', 'fd77::2/64'], ['10.77.0.1', 'fd77::1'])
  c2 = await container('c2', 'nbr1', 'vc2', ['10.77.0.3/24', 'fd77::3/64'], ['10.77.0.1', 'fd77::1'])
  c3 = await container('c3', 'nbr2', 'vc3', ['10.78.0.2/24'], ['10.78.0.1'])
  // the outside host routes the containers' subnets to us: direct access is what exposure refuses
  await ipIn(out, ['route', 'add', '10.77.0.0/24', 'via', '192.0.2.1'])
  await ipIn(out, ['-6', 'route', 'add', 'fd77::/64', 'via', '2001:db8::1'])
  for (const ns of [c1, c2, c3]) stops.push((await nsSpawn(ns, [process.execPath, server, '80'])).stop)
  stops.push((await nsSpawn(out, [process.execPath, server, '9000'])).stop)
  // route_localnet, as the portmap plugin sets it on the bridge (not the backend's job)
  await sysctl(host, 'net.ipv4.conf.nbr1.route_localnet', '1')
  await new Promise((r) => setTimeout(r, 300))
})

afterAll(() => {
  for (const s of stops) s()
  if (tmp) rmSync(tmp, {recursive: true, force: true})
})

describe('nftables backend, real nft and traffic', () => {
  it('ADD: one nft process per chain, the reference layouts in the ruleset', async () => {
    const d = drive([{ops: addOps('c1', C1.v4, C1.v6, 'nbr1')}, {ops: addOps('c2', '10.77.0.3/24', 'fd77::3/64', 'nbr1', {...POLICY, exposure: 'routed'}, [])}, {ops: addOps('c3', '10.78.0.2/24', undefined, 'nbr2', POLICY, [])}])
    // the first ADD also installs the generic iptables accept of inet ctrnet's mark (this host has
    // iptables and ip6tables): flock, then -C and -A per family; the next ADDs trust its state file
    expect(d.res.map((r) => r.spawns)).toEqual([1 + 1 + 4, 1, 1])
    expect(d.res.map((r) => r.ipt)).toEqual([4, 0, 0])
    for (const bin of ['iptables-save', 'ip6tables-save']) {
      expect((await nsExec(host, [bin, '-t', 'filter'])).stdout).toContain('-A FORWARD -m mark --mark 0x10000000/0x10000000 -m comment --comment "ctrnet: accepted in nftables table inet ctrnet" -j ACCEPT')
    }
    const rs = await ruleset()
    expect(rs).toContain('tcp dport 8080 dnat to 10.77.0.2:80 comment "c1"')
    expect(rs).toContain('ip daddr 192.0.2.1 tcp dport 8443 dnat to 10.77.0.2:80 comment "c1"')
    expect(rs).toContain('udp dport 5353 dnat to [fd77::2]:53 comment "c1"')
    expect(rs).toContain('ip saddr 10.77.0.0/24 ip daddr 10.77.0.2 ct status dnat masquerade comment "c1"')
    expect(rs).toContain('ip saddr 127.0.0.1 ip daddr 10.77.0.2 masquerade comment "c1"')
    expect(rs).toMatch(/ip saddr 10\.77\.0\.2 ip daddr != 10\.77\.0\.0\/24 masquerade comment "[0-9a-f]{16}-[0-9a-f]{16}, net: net-nbr1, if: eth0, id: c1"/)
    expect(rs).toContain('fib daddr type local jump hostports_all')
    expect(rs).toMatch(/set fwd4 \{\n\s+type ipv4_addr\n\s+elements = \{ [^}]*10\.77\.0\.2/)
    // the shared chains hold one copy however many containers were added
    expect(rs.match(/fib daddr type local jump hostports_all/g)?.length).toBe(4)
    expect(rs.match(/jump CNI-ADMIN/g)?.length).toBe(1)
  })

  it('a published port reaches the container from outside, from the host and from a sibling (hairpin)', async () => {
    expect(await connect(out, '192.0.2.1', 8080)).toBe('192.0.2.2')
    expect(await connect(out, '192.0.2.1', 8443)).toBe('192.0.2.2')
    expect(await connect(out, '2001:db8::1', 8080)).toBe('2001:db8::2')
    // from the host itself (output chain), to its own address and to localhost (route_localnet)
    expect(await connect(host, '192.0.2.1', 8080)).toMatch(/^(192\.0\.2\.1|10\.77\.0\.1)$/)
    expect(await connect(host, '127.0.0.1', 8080)).toBe('10.77.0.1')
    // a sibling on the same bridge through the host's address: masqueraded to the bridge address
    expect(await connect(c2, '192.0.2.1', 8080)).toBe('10.77.0.1')
    // the container to itself through its published port
    expect(await connect(c1, '192.0.2.1', 8080)).toBe('10.77.0.1')
  })

  it('the container goes out masqueraded', async () => {
    expect(await connect(c1, '192.0.2.2', 9000)).toBe('192.0.2.1')
    expect(await connect(c1, '2001:db8::2', 9000)).toBe('2001:db8::1')
  })

  it('exposure published: no direct access from outside', async () => {
    // br is published (c1's ADD) even though c2's policy said routed: per bridge, the first published wins until removeBridge
    expect(await connect(out, '10.77.0.2', 80)).toBe('TIMEOUT')
    expect(await connect(out, 'fd77::2', 80)).toBe('TIMEOUT')
  })

  it('isolation bridge: isolated bridges do not reach each other; the way out stays', async () => {
    expect(await connect(c3, '10.77.0.2', 80)).toBe('TIMEOUT')
    expect(await connect(c1, '10.78.0.2', 80)).toBe('TIMEOUT')
    expect(await connect(c3, '192.0.2.2', 9000)).toBe('192.0.2.1')
    // as the iptables backend's CNI-ISOLATION stages: a DNATed connection from
    // another isolated bridge is forwarded between the two bridges, and dropped
    expect(await connect(c3, '192.0.2.1', 8080)).toBe('TIMEOUT')
  })

  it('isolation isolated: the containers of one bridge no longer talk directly, published ports still work', async () => {
    expect(await connect(c2, '10.77.0.2', 80)).toBe('10.77.0.3')
    drive([{ops: [['acceptForwarding', {...POLICY, isolation: 'isolated'}, {addresses: ['10.77.0.3/24'], bridge: 'nbr1'}]]}])
    for (const port of ['vc1', 'vc2']) expect((await nsExec(host, ['cat', `/sys/class/net/${port}/brport/isolated`])).stdout.trim()).toBe('1')
    expect(await connect(c2, '10.77.0.2', 80)).toBe('TIMEOUT')
    expect(await connect(c2, '192.0.2.2', 9000)).toBe('192.0.2.1')
    // a sibling's connection to a published port: routed through the bridge
    // device, which isolated ports still reach; with br_netfilter calling
    // iptables, the kernel bridges the DNATed packet port to port instead, and
    // port isolation drops it (Docker's icc=false without its userland proxy too)
    await sysctl(host, 'net.bridge.bridge-nf-call-iptables', '0')
    try {
      expect(await connect(c2, '192.0.2.1', 8080)).toBe('10.77.0.1')
      expect(await connect(c2, '10.77.0.2', 80)).toBe('TIMEOUT')
    } finally {
      await sysctl(host, 'net.bridge.bridge-nf-call-iptables', '1')
    }
  })

  it('DEL removes only the container: the shared parts stay, a reference-style listing finds nothing of it', async () => {
    const d = drive([{ops: delOps('c1', C1.v4, C1.v6, 'nbr1')}])
    // flock, three listings (inet masquerade, ip and ip6 cni_hostport), one apply
    expect(d.res[0]!.spawns).toBe(5)
    const rs = await ruleset()
    expect(rs).not.toContain('"c1"')
    expect(rs).not.toContain('id: c1"')
    expect(rs).not.toMatch(/10\.77\.0\.2[,\s]/)
    expect(rs).toContain('id: c2"')
    expect(rs).toContain('fib daddr type local jump hostports_all')
    expect(await connect(out, '192.0.2.1', 8080)).toMatch(/^(ERROR|TIMEOUT)/)
    // idempotent
    drive([{ops: delOps('c1', C1.v4, C1.v6, 'nbr1')}])
  })

  it('removeBridge leaves nothing of the bridge; removing everything leaves only empty shared parts', async () => {
    drive([{ops: delOps('c2', '10.77.0.3/24', 'fd77::3/64', 'nbr1')}, {ops: delOps('c3', '10.78.0.2/24', undefined, 'nbr2')}, {removeBridge: 'nbr1'}, {removeBridge: 'nbr2'}, {removeBridge: 'nbr1'}])
    const rs = await ruleset()
    expect(rs).not.toMatch(/"nbr[12]"/)
    expect(rs).not.toMatch(/comment "c\d"/)
    expect(rs).not.toContain('elements')
    // nothing left in inet ctrnet: the generic iptables accept went with the last bridge
    for (const bin of ['iptables-save', 'ip6tables-save']) expect((await nsExec(host, [bin, '-t', 'filter'])).stdout).not.toContain('ctrnet: accepted')
  })

  it('an ADD with 32 published ports costs the same with 200 containers on the host as with 10', async () => {
    const ports = Array.from({length: 32}, (_, i) => ({hostPort: 20000 + i, containerPort: 80, protocol: 'tcp'}))
    const add = (i: number) => ({ops: addOps(`k${i}`, `10.77.${1 + (i >> 8)}.${i & 255}/16`, undefined, 'nbr1', POLICY, ports)})
    const first = drive(Array.from({length: 10}, (_, i) => add(i + 1))).res
    const rest = drive(Array.from({length: 190}, (_, i) => add(i + 11))).res
    const at10 = first.slice(-5)
    const at200 = rest.slice(-5)
    expect(at200.map((r) => r.spawns)).toEqual(at10.map((r) => r.spawns))
    expect(at200.map((r) => r.lines)).toEqual(at10.map((r) => r.lines))
    const median = (rs: Array<{ms: number}>) => rs.map((r) => r.ms).sort((a, b) => a - b)[2]!
    console.log(`ADD with 32 ports: ${median(at10).toFixed(1)} ms at 10 containers, ${median(at200).toFixed(1)} ms at 200`)
    expect(median(at200)).toBeLessThan(median(at10) * 3 + 20)
    const rs = await ruleset()
    expect(rs.match(/comment "k\d+"/g)?.length).toBe(200 * 34)
  })
})
