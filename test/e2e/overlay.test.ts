/**
 * Issue 13: the overlay driver. Three "hosts" (network namespaces A, B, C,
 * each with its own conf, cache and /var/lib) are joined by an underlay
 * bridge in a fourth namespace, where a real etcd (Debian's etcd-server) runs
 * on a private data dir. "Containers" are plain namespaces attached with
 * `ctrnet cni add`. Nothing of the machine's own namespace is touched.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {CLI, HostNs, ROOT, type RunResult, must, sh} from './containerd-harness.js'

const NET = 'ovl'
const VNI = 4242
const SUBNET = '10.213.0.0/16'
const ETCD_IP = '192.168.250.1'
const ETCD = `http://${ETCD_IP}:2379`
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`
const UNDER = `ovu-${tag}`

let dir: string
let etcd: ChildProcess | undefined
const hosts: Record<'A' | 'B' | 'C', HostNs> = {} as never
const underlayIp = {A: '192.168.250.2', B: '192.168.250.3', C: '192.168.250.4'}
const containers: string[] = []
const servers: ChildProcess[] = []
const daemons: Partial<Record<'A' | 'B' | 'C', ChildProcess>> = {}
const TTL = 6

function startEtcd(): ChildProcess {
  const p = spawn(
    'ip',
    [
      'netns', 'exec', UNDER, 'etcd',
      '--name', 'ovl', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', ETCD, '--advertise-client-urls', ETCD,
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'ovl=http://127.0.0.1:2380',
    ],
    {stdio: ['ignore', 'ignore', 'pipe']},
  )
  p.stderr!.resume()
  return p
}

async function waitEtcd(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = sh('ip', ['netns', 'exec', UNDER, 'node', '-e', `fetch('${ETCD}/v3/kv/range',{method:'POST',body:'{"key":"AA=="}'}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`])
    if (r.code === 0) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error('etcd did not answer')
}

async function stopEtcd(): Promise<void> {
  const p = etcd
  etcd = undefined
  if (!p || p.exitCode !== null) return
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve())
    p.kill('SIGTERM')
  })
}

/** `ctrnet daemon` on a host (no containerd there: its reconcile passes fail and retry; the overlay part runs). */
function startDaemon(h: 'A' | 'B' | 'C'): void {
  const host = hosts[h]
  const run = join(host.dir, 'run')
  const p = spawn(
    'ip',
    ['netns', 'exec', host.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', host.varlib, process.execPath, CLI,
      'daemon', '--no-dns', '--run-dir', run, '--reconcile-interval', '1h', '--log-format', 'json',
      '-a', join(host.dir, 'no-containerd.sock'), '--cni-netconfpath', host.netconf, '--cni-cachedir', host.cache],
    {stdio: ['ignore', 'ignore', 'ignore']},
  )
  daemons[h] = p
}

async function stopDaemon(h: 'A' | 'B' | 'C'): Promise<void> {
  const p = daemons[h]
  delete daemons[h]
  if (!p || p.exitCode !== null) return
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve())
    p.kill('SIGTERM')
  })
}

async function eventually(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`not within ${ms} ms: ${what}`)
}

/** `ip link show DEV` failed because DEV is not there (not because the namespace or ip is missing). */
function expectNoLink(r: RunResult): void {
  expect(r.code).not.toBe(0)
  expect(r.stderr).toMatch(/does not exist/)
}

function ok(r: RunResult, what: string): string {
  if (r.code !== 0) throw new Error(`${what} -> exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** A "container" on a host: a namespace attached to the overlay with cni add. */
function container(h: 'A' | 'B' | 'C', name: string, extra: string[] = []): {ns: string; ip: string} {
  const ns = `ovc-${tag}-${name}`
  must('ip', ['netns', 'add', ns])
  containers.push(ns)
  must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  const out = ok(hosts[h].cli(['cni', 'add', NET, `/var/run/netns/${ns}`, '--container-id', ns, ...extra]), `cni add on ${h}`)
  const res = JSON.parse(out) as {ips: Array<{address: string}>}
  return {ns, ip: res.ips[0]!.address.split('/')[0]!}
}

function ping(fromNs: string, ip: string): RunResult {
  return sh('ip', ['netns', 'exec', fromNs, 'busybox', 'ping', '-c', '1', '-W', '2', ip])
}

function sliceOf(ip: string): string {
  return ip.split('.').slice(0, 3).join('.') + '.0/24'
}

function vxlanRoutes(h: 'A' | 'B' | 'C'): string[] {
  return hosts[h].exec('ip', ['route', 'show', 'dev', `ctrnet.${VNI}`]).stdout.trim().split('\n').filter(Boolean)
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ovl-e2e-'))
  must('ip', ['netns', 'add', UNDER])
  must('ip', ['-n', UNDER, 'link', 'set', 'lo', 'up'])
  must('ip', ['-n', UNDER, 'link', 'add', 'br0', 'type', 'bridge'])
  must('ip', ['-n', UNDER, 'addr', 'add', `${ETCD_IP}/24`, 'dev', 'br0'])
  must('ip', ['-n', UNDER, 'link', 'set', 'br0', 'up'])
  for (const h of ['A', 'B', 'C'] as const) {
    const host = new HostNs(`ov${h.toLowerCase()}`)
    hosts[h] = host
    must('ip', ['-n', UNDER, 'link', 'add', `u${h}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name])
    must('ip', ['-n', UNDER, 'link', 'set', `u${h}`, 'master', 'br0', 'up'])
    must('ip', ['-n', host.name, 'addr', 'add', `${underlayIp[h]}/24`, 'dev', 'eth0'])
    must('ip', ['-n', host.name, 'link', 'set', 'eth0', 'up'])
    must('ip', ['-n', host.name, 'route', 'add', 'default', 'via', ETCD_IP])
    host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
  }
  etcd = startEtcd()
  await waitEtcd()
})

afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL')
  for (const h of ['A', 'B', 'C'] as const) await stopDaemon(h)
  await stopEtcd()
  for (const ns of containers) sh('ip', ['netns', 'del', ns])
  for (const h of Object.values(hosts)) h.cleanup()
  sh('ip', ['netns', 'del', UNDER])
  if (dir) rmSync(dir, {recursive: true, force: true})
})

describe('overlay network over etcd + VXLAN', () => {
  const ctr: Record<string, {ns: string; ip: string}> = {}

  it('bad options get one line each, and an unreachable etcd is refused at create', () => {
    const create = (args: string[]) => hosts.A.cli(['network', 'create', '-d', 'overlay', ...args, 'bad'])
    const cases: Array<[string[], RegExp]> = [
      [['--subnet', SUBNET, '-o', `etcd=${ETCD}`, '-o', 'vni=0'], /vni=.*must be an integer 1\.\.16777215/],
      [['--subnet', SUBNET, '-o', `etcd=${ETCD}`, '-o', 'vni=16777216'], /vni=.*must be an integer 1\.\.16777215/],
      [['--subnet', '10.214.0.0/24', '-o', `etcd=${ETCD}`, '-o', 'vni=7'], /too small for host subnets of \/24/],
      [['--subnet', SUBNET, '-o', 'etcd=http://192.168.250.77:2379', '-o', 'vni=7'], /etcd http:\/\/192\.168\.250\.77:2379: unreachable/],
    ]
    for (const [args, want] of cases) {
      const r = create(args)
      expect(r.code, r.stderr).not.toBe(0)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/^ctrnet: network create bad : /)
      expect(r.stderr).toMatch(want)
    }
    expect(existsSync(hosts.A.confPath('bad'))).toBe(false)
  })

  it('containers on A, B and C ping each other across hosts; the slices are distinct', async () => {
    for (const h of ['A', 'B', 'C'] as const) {
      ok(hosts[h].cli(['network', 'create', '-d', 'overlay', '--subnet', SUBNET, '-o', `etcd=${ETCD}`, '-o', `vni=${VNI}`, '-o', `lease-ttl=${TTL}`, NET]), `create on ${h}`)
    }
    for (const h of ['A', 'B', 'C'] as const) startDaemon(h)
    for (const h of ['A', 'B', 'C'] as const) ctr[h] = container(h, h.toLowerCase())
    const slices = new Set(['A', 'B', 'C'].map((h) => sliceOf(ctr[h]!.ip)))
    expect(slices.size).toBe(3)
    // each ADD syncs the peers known then; A and B learn of the later hosts through their daemon's etcd watch
    ctr.A2 = container('A', 'a2')
    for (const [from, to] of [['C', 'A'], ['C', 'B'], ['A2', 'C'], ['A', 'B'], ['A', 'C'], ['B', 'C'], ['B', 'A']]) {
      await eventually(`${from} pings ${to} (${ctr[to]!.ip})`, () => ping(ctr[from]!.ns, ctr[to]!.ip).code === 0)
    }
    // network inspect shows the hosts, their slices and underlay addresses, from etcd
    const inspected = JSON.parse(ok(hosts.A.cli(['network', 'inspect', NET]), 'inspect')) as Array<{IPAM: {Config: unknown[]}; Overlay: {VNI: number; Hosts: Array<{Subnet: string; Underlay: string; ThisHost: boolean}>}}>
    expect(inspected[0]!.IPAM.Config).toEqual([{Subnet: SUBNET}])
    expect(inspected[0]!.Overlay.VNI).toBe(VNI)
    const seen = inspected[0]!.Overlay.Hosts.map((x) => [x.Underlay, x.Subnet, x.ThisHost]).sort()
    expect(seen).toEqual(
      (['A', 'B', 'C'] as const).map((h) => [underlayIp[h], sliceOf(ctr[h]!.ip), h === 'A']).sort(),
    )
    // flannel's model on the wire: route via the peer's VTEP (its slice's network address), onlink
    expect(vxlanRoutes('A').some((l) => l.startsWith(`${sliceOf(ctr.C!.ip)} via ${sliceOf(ctr.C!.ip).split('/')[0]} `) && l.includes('onlink'))).toBe(true)
  })

  it('C restarted (device and local state gone) gets its slice back and is reachable without resync elsewhere', async () => {
    const before = sliceOf(ctr.C!.ip)
    await stopDaemon('C')
    ok(hosts.C.cli(['cni', 'del', NET, `/var/run/netns/${ctr.C!.ns}`, '--container-id', ctr.C!.ns]), 'cni del on C')
    ok(hosts.C.exec('ip', ['link', 'del', `ctrnet.${VNI}`]), 'ip link del on C')
    rmSync(join(hosts.C.varlib, 'ctrnet', 'overlay', `${NET}.json`))
    ctr.C = container('C', 'c2')
    startDaemon('C')
    expect(sliceOf(ctr.C.ip)).toBe(before)
    // same slice, same VTEP MAC (derived from VNI + underlay address): A and B's entries still hold
    for (const from of ['A', 'B']) {
      const r = ping(ctr[from]!.ns, ctr.C!.ip)
      expect(r.code, `${from} -> C: ${r.stdout}${r.stderr}`).toBe(0)
    }
  })

  it('a port published on B answers from B\'s underlay address', async () => {
    const web = container('B', 'web', ['-p', '18080:8080'])
    const srv = spawn('ip', ['netns', 'exec', web.ns, process.execPath, '-e', "require('net').createServer((s)=>s.end('hello from B to '+s.remoteAddress.replace('::ffff:',''))).listen(8080)"], {stdio: 'ignore'})
    servers.push(srv)
    const script = join(dir, 'get.cjs')
    writeFileSync(
      script,
      "const s=require('net').connect(+process.argv[3],process.argv[2]);let d='';s.on('data',(b)=>d+=b);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',(e)=>{console.error(e.message);process.exit(1)});setTimeout(()=>process.exit(2),3000)",
    )
    let r: RunResult = {code: 1, stdout: '', stderr: ''}
    for (let i = 0; i < 30; i++) {
      r = hosts.A.exec(process.execPath, [script, underlayIp.B, '18080'])
      if (r.code === 0) break
      await new Promise((res) => setTimeout(res, 100))
    }
    expect(r.stdout.trim(), r.stderr).toMatch(/^hello from B to /)
    // over the overlay a container sees its peer's own address: no masquerade inside the overlay subnet
    const direct = sh('ip', ['netns', 'exec', ctr.A!.ns, process.execPath, script, web.ip, '8080'])
    expect(direct.stdout.trim(), direct.stderr).toBe(`hello from B to ${ctr.A!.ip}`)
    // ...while traffic leaving it is masqueraded (flannel's rule: not towards the overlay subnet)
    const nat = hosts.A.iptables().split('\n')
    expect(nat.some((l) => l.includes(`-d ${SUBNET}`) && l.includes('-j ACCEPT'))).toBe(true)
    expect(nat.some((l) => l.startsWith(`-A POSTROUTING -s ${ctr.A!.ip}/32`))).toBe(true)
  })

  it('a record in etcd for a range outside the network never becomes a route', () => {
    const put = (key: string, value: string) =>
      sh('ip', ['netns', 'exec', UNDER, process.execPath, '-e',
        `fetch('${ETCD}/v3/kv/put',{method:'POST',body:JSON.stringify({key:Buffer.from(process.argv[1]).toString('base64'),value:Buffer.from(process.argv[2]).toString('base64')})}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`,
        key, value])
    const bad = JSON.stringify({publicIp: '192.168.250.9', vtepMac: '02:00:00:00:00:09'})
    expect(put(`/ctrnet/overlay/${VNI}/subnets/0.0.0.0-1`, bad).code).toBe(0)
    expect(put(`/ctrnet/overlay/${VNI}/subnets/10.213.9.0-23`, bad).code).toBe(0)
    const extra = container('A', 'a3')
    expect(sliceOf(extra.ip)).toBe(sliceOf(ctr.A!.ip))
    const routes = vxlanRoutes('A')
    expect(routes.filter((l) => l.startsWith('0.0.0.0/1') || l.startsWith('10.213.9.0/23'))).toEqual([])
    expect(routes.length).toBeGreaterThanOrEqual(2)
  })

  it('etcd stopped: existing pings work, a new ADD fails with one line naming etcd, and works once etcd is back', async () => {
    await stopEtcd()
    expect(ping(ctr.A!.ns, ctr.B!.ip).code).toBe(0)
    expect(ping(ctr.B!.ns, ctr.C!.ip).code).toBe(0)
    const ns = `ovc-${tag}-late`
    must('ip', ['netns', 'add', ns])
    containers.push(ns)
    const r = hosts.A.cli(['cni', 'add', NET, `/var/run/netns/${ns}`, '--container-id', ns])
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^ctrnet: .*etcd http:\/\/192\.168\.250\.1:2379: unreachable/)
    // nothing of the failed ADD stays
    expectNoLink(hosts.A.exec('ip', ['-n', ns, 'link', 'show', 'eth0']))
    etcd = startEtcd()
    await waitEtcd()
    const late = JSON.parse(ok(hosts.A.cli(['cni', 'add', NET, `/var/run/netns/${ns}`, '--container-id', ns]), 'cni add after etcd is back')) as {ips: Array<{address: string}>}
    const ip = late.ips[0]!.address.split('/')[0]!
    expect(sliceOf(ip)).toBe(sliceOf(ctr.A!.ip))
    expect(ping(ctr.C!.ns, ip).code).toBe(0)
  })

  it('ctrnet cni plugin runs the overlay entry as an exec\'d CNI plugin (as containerd or nerdctl would)', () => {
    const conflist = JSON.parse(readFileSync(hosts.A.confPath(NET), 'utf8')) as {cniVersion: string; name: string; plugins: Array<Record<string, unknown>>}
    const stdin = JSON.stringify({...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion})
    const ns = `ovc-${tag}-exec`
    must('ip', ['netns', 'add', ns])
    containers.push(ns)
    const plugin = (command: string) =>
      sh('ip', ['netns', 'exec', hosts.A.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', hosts.A.varlib,
        'env', `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${ns}`, `CNI_NETNS=/var/run/netns/${ns}`, 'CNI_IFNAME=eth0', 'CNI_PATH=/usr/lib/cni',
        process.execPath, CLI, 'cni', 'plugin'], {input: stdin})
    const add = plugin('ADD')
    expect(add.code, add.stdout + add.stderr).toBe(0)
    const res = JSON.parse(add.stdout) as {cniVersion: string; ips: Array<{address: string}>}
    expect(res.cniVersion).toBe('1.0.0')
    const ip = res.ips[0]!.address.split('/')[0]!
    expect(sliceOf(ip)).toBe(sliceOf(ctr.A!.ip))
    expect(ping(ctr.B!.ns, ip).code).toBe(0)
    const del = plugin('DEL')
    expect(del.code, del.stdout + del.stderr).toBe(0)
    expectNoLink(sh('ip', ['-n', ns, 'link', 'show', 'eth0']))
    expect(hosts.A.leases(NET).some((l) => l === ip)).toBe(false)
    // an unknown type: the CNI error object on stdout, exit 1
    const bad = sh(process.execPath, [CLI, 'cni', 'plugin'], {input: JSON.stringify({cniVersion: '1.0.0', name: 'x', type: 'nope'}), env: {...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/x', CNI_IFNAME: 'eth0'}})
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({code: 7})
  })

  it('20 hosts leasing at once get 20 distinct slices', async () => {
    const script = join(dir, 'lease.mjs')
    writeFileSync(
      script,
      [
        `import {EtcdClient} from '${ROOT}/dist/sys/etcd.js'`,
        `import {handEtcdHttp} from '${ROOT}/dist/sys/etcd-port.js'`,
        `handEtcdHttp(() => import('${ROOT}/dist/sys/etcd-http.js'))`,
        `import {acquireSlice} from '${ROOT}/dist/services/overlay/lease.js'`,
        `import {parseCidr, formatCidr} from '${ROOT}/dist/kernel/ip/addr.js'`,
        `const r = await acquireSlice(new EtcdClient(['${ETCD}']), {vni: 99, subnet: parseCidr('10.99.0.0/19'), hostSubnetSize: 24, publicIp: process.argv[2], vtepMac: '02:00:00:00:00:01', ttl: 60})`,
        'console.log(formatCidr(r.mine.slice))',
      ].join('\n'),
    )
    const runs = Array.from({length: 20}, (_, i) =>
      new Promise<RunResult>((resolve) => {
        const p = spawn('ip', ['netns', 'exec', UNDER, process.execPath, script, `172.30.0.${i + 1}`], {stdio: ['ignore', 'pipe', 'pipe']})
        let stdout = ''
        let stderr = ''
        p.stdout.on('data', (d: Buffer) => (stdout += d))
        p.stderr.on('data', (d: Buffer) => (stderr += d))
        p.on('close', (code) => resolve({code: code ?? 1, stdout, stderr}))
      }),
    )
    const res = await Promise.all(runs)
    for (const r of res) expect(r.code, r.stderr).toBe(0)
    const slices = res.map((r) => r.stdout.trim())
    expect(new Set(slices).size).toBe(20)
    for (const s of slices) expect(s).toMatch(/^10\.99\.([1-9]|[12][0-9]|3[01])\.0\/24$/)
  })

  it('C stops renewing: after the TTL, A and B drop its routes', async () => {
    const cSlice = sliceOf(ctr.C!.ip)
    expect(vxlanRoutes('A').some((l) => l.startsWith(cSlice))).toBe(true)
    await stopDaemon('C')
    await eventually(`A and B drop ${cSlice}`, () => !vxlanRoutes('A').some((l) => l.startsWith(cSlice)) && !vxlanRoutes('B').some((l) => l.startsWith(cSlice)), (TTL + 15) * 1000)
    expect(hosts.A.exec('ip', ['neigh', 'show', 'dev', `ctrnet.${VNI}`]).stdout).not.toContain(cSlice.split('/')[0])
    // the others still reach each other
    expect(ping(ctr.A!.ns, ctr.B!.ip).code).toBe(0)
  })

  it('network rm on B gives its slice back at once and removes its VXLAN device', async () => {
    const bSlice = sliceOf(ctr.B!.ip)
    expect(vxlanRoutes('A').some((l) => l.startsWith(bSlice))).toBe(true)
    await stopDaemon('B')
    const r = hosts.B.cli(['network', 'rm', NET])
    expect(r.code, r.stderr).toBe(0)
    expectNoLink(hosts.B.exec('ip', ['link', 'show', `ctrnet.${VNI}`]))
    expectNoLink(hosts.B.exec('ip', ['link', 'show', `ctrov${VNI}`]))
    expect(existsSync(join(hosts.B.varlib, 'ctrnet', 'overlay', `${NET}.json`))).toBe(false)
    // long before the TTL would end: the lease was revoked, A's daemon saw the key go
    await eventually(`A drops ${bSlice}`, () => !vxlanRoutes('A').some((l) => l.startsWith(bSlice)), 3000)
  })

  it('cni plugin --install puts ctrnet-overlay in a bin dir, and libcni\'s way of running it attaches, checks and detaches', async () => {
    const bin = join(dir, 'cni-bin')
    mkdirSync(bin)
    const install = (binDir: string) => sh(process.execPath, [CLI, 'cni', 'plugin', '--install', '--cni-bin-dir', binDir])
    const plugin = join(bin, 'ctrnet-overlay')
    for (let i = 0; i < 2; i++) {
      const r = install(bin)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toBe(`${plugin}\n`)
      expect(readlinkSync(plugin)).toBe(realpathSync(CLI))
    }
    expect(readdirSync(bin)).toEqual(['ctrnet-overlay'])
    const missing = install(join(dir, 'no-such-dir'))
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^ctrnet: cni plugin --install : .*no-such-dir does not exist.*\n$/)
    // a read-only bin dir (in a private mount namespace): one line, nothing left behind
    rmSync(plugin)
    const ro = sh('unshare', ['-m', 'sh', '-c', 'mount --bind -o ro "$0" "$0" && exec "$@"', bin, process.execPath, CLI, 'cni', 'plugin', '--install', '--cni-bin-dir', bin])
    expect(ro.code).toBe(1)
    expect(ro.stderr).toMatch(/^ctrnet: cni plugin --install : cannot install .*ctrnet-overlay: .* is not writable \(EROFS\)\n$/)
    expect(readdirSync(bin)).toEqual([])
    expect(install(bin).code).toBe(0)

    // B joins again (its network was removed above) with a container to reach
    ok(hosts.B.cli(['network', 'create', '-d', 'overlay', '--subnet', SUBNET, '-o', `etcd=${ETCD}`, '-o', `vni=${VNI}`, '-o', `lease-ttl=${TTL}`, NET]), 'create on B again')
    const b = container('B', 'b-plugin')

    // what libcni does for the first plugin of A's conflist: its entry with the list's name and cniVersion on stdin
    const conflist = JSON.parse(readFileSync(hosts.A.confPath(NET), 'utf8')) as {cniVersion: string; name: string; plugins: Array<Record<string, unknown>>}
    expect(conflist.plugins[0]!.type).toBe('ctrnet-overlay')
    const stdin = JSON.stringify({...conflist.plugins[0], name: conflist.name, cniVersion: conflist.cniVersion})
    const ns = `ovc-${tag}-plug`
    must('ip', ['netns', 'add', ns])
    containers.push(ns)
    const run = (command: string, input = stdin) =>
      sh('ip', ['netns', 'exec', hosts.A.name, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', hosts.A.varlib,
        'env', `CNI_COMMAND=${command}`, `CNI_CONTAINERID=${ns}`, `CNI_NETNS=/var/run/netns/${ns}`, 'CNI_IFNAME=eth0', `CNI_PATH=${bin}:/usr/lib/cni`,
        plugin], {input})

    const version = run('VERSION', JSON.stringify({cniVersion: '1.1.0'}))
    expect(version.code, version.stderr).toBe(0)
    expect(JSON.parse(version.stdout)).toEqual({cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']})

    const add = run('ADD')
    expect(add.code, add.stdout + add.stderr).toBe(0)
    const res = JSON.parse(add.stdout) as {cniVersion: string; interfaces: Array<{name: string; sandbox?: string}>; ips: Array<{address: string}>}
    expect(res.cniVersion).toBe(conflist.cniVersion)
    expect(res.interfaces.some((i) => i.name === 'eth0' && i.sandbox === `/var/run/netns/${ns}`)).toBe(true)
    const ip = res.ips[0]!.address.split('/')[0]!
    expect(sliceOf(ip)).toBe(sliceOf(ctr.A!.ip))
    expect(hosts.A.leases(NET)).toContain(ip)
    await eventually(`the plugin's container pings B's (${b.ip})`, () => ping(ns, b.ip).code === 0, 10_000)

    const check = run('CHECK', JSON.stringify({...JSON.parse(stdin), prevResult: res}))
    expect(check.code, check.stdout + check.stderr).toBe(0)
    expect(check.stdout).toBe('')

    const del = run('DEL')
    expect(del.code, del.stdout + del.stderr).toBe(0)
    expectNoLink(sh('ip', ['-n', ns, 'link', 'show', 'eth0']))
    expect(hosts.A.leases(NET)).not.toContain(ip)
    // a DEL again is not an error (CNI: DEL of what is gone succeeds)
    expect(run('DEL').code).toBe(0)

    // a bad netconf through the link: the CNI error object on stdout, exit 1
    const bad = run('ADD', JSON.stringify({cniVersion: '1.0.0', name: NET, type: 'ctrnet-overlay'}))
    expect(bad.code).toBe(1)
    expect(JSON.parse(bad.stdout)).toMatchObject({code: 7, msg: expect.stringMatching(/etcd/)})
  })
})

describe('overlay with TLS to etcd (client certificates)', () => {
  const TLS_NET = 'ovltls'
  const TLS_VNI = 4343
  const TLS_SUBNET = '10.215.0.0/16'
  const TLS_ETCD = `https://${ETCD_IP}:2479`
  let pki: string
  let tlsEtcd: ChildProcess | undefined
  const ssl = (args: string[]) => must('openssl', args)

  /** A key and a certificate signed by ca (or self-signed when ca is undefined), with the given v3 extensions. */
  function issue(name: string, cn: string, ext: string, ca?: string): void {
    const key = join(pki, `${name}.key`)
    if (!ca) {
      ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', join(pki, `${name}.crt`), '-days', '1', '-subj', `/CN=${cn}`, '-addext', ext])
      return
    }
    ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', join(pki, `${name}.csr`), '-subj', `/CN=${cn}`])
    writeFileSync(join(pki, `${name}.ext`), `${ext}\n`)
    ssl(['x509', '-req', '-in', join(pki, `${name}.csr`), '-CA', join(pki, `${ca}.crt`), '-CAkey', join(pki, `${ca}.key`), '-CAcreateserial', '-out', join(pki, `${name}.crt`), '-days', '1', '-extfile', join(pki, `${name}.ext`)])
  }
  const f = (name: string) => join(pki, name)
  const tlsOpts = (...files: Array<['cert' | 'key' | 'ca', string]>) => files.flatMap(([k, v]) => ['-o', `etcd-${k}=${f(v)}`])
  const full = () => tlsOpts(['ca', 'ca.crt'], ['cert', 'client.crt'], ['key', 'client.key'])
  const create = (h: 'A' | 'B', extra: string[], name = TLS_NET) =>
    hosts[h].cli(['network', 'create', '-d', 'overlay', '--subnet', TLS_SUBNET, '-o', `etcd=${TLS_ETCD}`, '-o', `vni=${TLS_VNI}`, ...extra, name])

  beforeAll(async () => {
    pki = join(dir, 'pki')
    must('mkdir', ['-p', pki])
    issue('ca', 'ctrnet-test-ca', 'basicConstraints=critical,CA:TRUE')
    issue('other-ca', 'another-ca', 'basicConstraints=critical,CA:TRUE')
    // etcd's own gateway dials its gRPC port with the server certificate: it must be good for clientAuth too
    issue('server', 'etcd', `subjectAltName=IP:${ETCD_IP}\nextendedKeyUsage=serverAuth,clientAuth`, 'ca')
    issue('client', 'ctrnet-host', 'extendedKeyUsage=clientAuth', 'ca')
    issue('stranger', 'ctrnet-host', 'extendedKeyUsage=clientAuth', 'other-ca')
    tlsEtcd = spawn(
      'ip',
      ['netns', 'exec', UNDER, 'etcd', '--name', 'tls', '--data-dir', join(dir, 'etcd-tls'),
        '--listen-client-urls', TLS_ETCD, '--advertise-client-urls', TLS_ETCD,
        '--cert-file', f('server.crt'), '--key-file', f('server.key'), '--trusted-ca-file', f('ca.crt'), '--client-cert-auth',
        '--listen-peer-urls', 'http://127.0.0.1:2480', '--initial-advertise-peer-urls', 'http://127.0.0.1:2480', '--initial-cluster', 'tls=http://127.0.0.1:2480'],
      {stdio: ['ignore', 'ignore', 'pipe']},
    )
    tlsEtcd.stderr!.resume()
    // ready when a TLS request with the client certificate gets an answer
    const probe = [
      "const o={method:'POST',ca:fs.readFileSync(process.argv[1]),cert:fs.readFileSync(process.argv[2]),key:fs.readFileSync(process.argv[3])};",
      `const r=https.request('${TLS_ETCD}/v3/kv/range',o,(res)=>process.exit(res.statusCode===200?0:1));r.on('error',()=>process.exit(1));r.end('{"key":"AA=="}')`,
    ].join('')
    for (let i = 0; ; i++) {
      if (sh('ip', ['netns', 'exec', UNDER, process.execPath, '-e', `const fs=require('fs'),https=require('https');${probe}`, f('ca.crt'), f('client.crt'), f('client.key')]).code === 0) break
      if (i > 100) throw new Error('the TLS etcd did not answer')
      await new Promise((r) => setTimeout(r, 200))
    }
  })

  afterAll(async () => {
    const p = tlsEtcd
    if (p && p.exitCode === null) {
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve())
        p.kill('SIGTERM')
      })
    }
  })

  it('refuses bad TLS options, a missing client certificate and a server its CA did not sign, with one line each', () => {
    const cases: Array<[string[], RegExp]> = [
      [tlsOpts(['cert', 'client.crt']), /etcd-cert and -o etcd-key go together/],
      [['-o', 'etcd-ca=ca.crt'], /invalid -o etcd-ca="ca.crt": must be an absolute file path/],
      // etcd asks for a client certificate: the handshake fails, named
      [tlsOpts(['ca', 'ca.crt']), /^ctrnet: network create ovltls : etcd https:\/\/192\.168\.250\.1:2479: TLS failed: ERR_SSL_\w+$/m],
      // etcd's certificate is not signed by the CA given
      [tlsOpts(['ca', 'other-ca.crt'], ['cert', 'client.crt'], ['key', 'client.key']), /etcd https:\/\/192\.168\.250\.1:2479: TLS failed: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)/],
      // a client certificate from another CA: etcd refuses it
      [tlsOpts(['ca', 'ca.crt'], ['cert', 'stranger.crt'], ['key', 'stranger.key']), /etcd https:\/\/192\.168\.250\.1:2479: TLS failed: ERR_SSL_\w+$/m],
      [tlsOpts(['ca', 'missing.crt']), /etcd: cannot read etcd-ca \/.*missing\.crt: ENOENT/],
    ]
    for (const [extra, want] of cases) {
      const r = create('A', extra)
      expect(r.code, r.stderr).not.toBe(0)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/^ctrnet: network create ovltls : /)
      expect(r.stderr).toMatch(want)
    }
    // TLS files with an http:// endpoint
    const plain = hosts.A.cli(['network', 'create', '-d', 'overlay', '--subnet', TLS_SUBNET, '-o', `etcd=${ETCD}`, '-o', `vni=${TLS_VNI}`, ...full(), TLS_NET])
    expect(plain.code).not.toBe(0)
    expect(plain.stderr).toMatch(/need https:\/\/ endpoints/)
    expect(existsSync(hosts.A.confPath(TLS_NET))).toBe(false)
  })

  it('hosts A and B share a network through an etcd that wants client certificates', async () => {
    for (const h of ['A', 'B'] as const) ok(create(h, full()), `create on ${h}`)
    const conf = JSON.parse(readFileSync(hosts.A.confPath(TLS_NET), 'utf8')) as {plugins: Array<Record<string, unknown>>}
    expect(conf.plugins[0]).toMatchObject({etcd: TLS_ETCD, etcdCa: f('ca.crt'), etcdCert: f('client.crt'), etcdKey: f('client.key')})
    // both hosts' daemons follow the watch over TLS (A's may run since the first describe; B's was stopped there)
    for (const h of ['A', 'B'] as const) if (!daemons[h]) startDaemon(h)
    const add = (h: 'A' | 'B', name: string) => {
      const ns = `ovc-${tag}-${name}`
      must('ip', ['netns', 'add', ns])
      containers.push(ns)
      const res = JSON.parse(ok(hosts[h].cli(['cni', 'add', TLS_NET, `/var/run/netns/${ns}`, '--container-id', ns]), `cni add on ${h}`)) as {ips: Array<{address: string}>}
      return {ns, ip: res.ips[0]!.address.split('/')[0]!}
    }
    const a = add('A', 'tlsa')
    const b = add('B', 'tlsb')
    expect(sliceOf(a.ip)).not.toBe(sliceOf(b.ip))
    await eventually(`A pings B (${b.ip})`, () => ping(a.ns, b.ip).code === 0)
    await eventually(`B pings A (${a.ip})`, () => ping(b.ns, a.ip).code === 0)
    const inspected = JSON.parse(ok(hosts.B.cli(['network', 'inspect', TLS_NET]), 'inspect')) as Array<{Overlay: {Hosts: Array<{Underlay: string; Subnet: string}>}}>
    expect(inspected[0]!.Overlay.Hosts.map((x) => [x.Underlay, x.Subnet]).sort()).toEqual([[underlayIp.A, sliceOf(a.ip)], [underlayIp.B, sliceOf(b.ip)]].sort())
    // network rm on A gives its slice back over TLS: B's daemon drops A's route
    const routes = () => hosts.B.exec('ip', ['route', 'show', 'dev', `ctrnet.${TLS_VNI}`]).stdout
    expect(routes()).toContain(sliceOf(a.ip))
    ok(hosts.A.cli(['cni', 'del', TLS_NET, `/var/run/netns/${a.ns}`, '--container-id', a.ns]), 'cni del on A')
    ok(hosts.A.cli(['network', 'rm', TLS_NET]), 'rm on A')
    await eventually(`B drops ${sliceOf(a.ip)}`, () => !routes().includes(sliceOf(a.ip)), 5000)
    const after = JSON.parse(ok(hosts.B.cli(['network', 'inspect', TLS_NET]), 'inspect after rm')) as Array<{Overlay: {Hosts: Array<{Underlay: string}>}}>
    expect(after[0]!.Overlay.Hosts.map((x) => x.Underlay)).toEqual([underlayIp.B])
  })
})

describe('the daemon follows the overlay networks of every containerd namespace', () => {
  it('a network A joined in namespace "other" learns of B, who joined later, through A\'s daemon', async () => {
    const name = 'ovlns'
    const args = ['network', 'create', '-d', 'overlay', '--subnet', '10.216.0.0/16', '-o', `etcd=${ETCD}`, '-o', 'vni=4444', name]
    ok(hosts.A.cli(args, {namespace: 'other'}), 'create on A in namespace other')
    ok(hosts.B.cli(args), 'create on B')
    if (!daemons.A) startDaemon('A')
    const add = (h: 'A' | 'B', ns: string, namespace?: string) => {
      must('ip', ['netns', 'add', ns])
      containers.push(ns)
      const r = JSON.parse(ok(hosts[h].cli(['cni', 'add', name, `/var/run/netns/${ns}`, '--container-id', ns], {namespace}), `cni add on ${h}`)) as {ips: Array<{address: string}>}
      return r.ips[0]!.address.split('/')[0]!
    }
    const a = add('A', `ovc-${tag}-nsa`, 'other')
    const b = add('B', `ovc-${tag}-nsb`)
    // B's ADD synced A's slice; A's only way to B's slice is its daemon's watch of this network
    await eventually(`A's daemon routes ${sliceOf(b)}`, () => hosts.A.exec('ip', ['route', 'show', 'dev', 'ctrnet.4444']).stdout.includes(sliceOf(b)))
    await eventually(`A pings B (${b})`, () => ping(`ovc-${tag}-nsa`, b).code === 0)
    expect(sliceOf(a)).not.toBe(sliceOf(b))
  })
})
