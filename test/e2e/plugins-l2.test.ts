/**
 * bridge, host-local, static, loopback and tuning (embedded) against the
 * reference plugins 1.1.1 in /usr/lib/cni, in throwaway namespaces (prefix h2x-).
 *
 * Our plugins run in-process inside a throwaway "host" namespace through
 * test/e2e/plugins-l2.driver.mjs (`ip netns exec <ns> node driver <dist>`), built
 * from src with tsc into a private dir. The reference runs in a second
 * throwaway host namespace with the same config; the normalized kernel state,
 * host-local files and results must be equal, and each side's DEL must clean
 * up the other side's ADD.
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

const ROOT = resolve(__dirname, '../..')
const DRIVER = join(ROOT, 'test/e2e/plugins-l2.driver.mjs')
const TAG = process.pid.toString(36)
const BR = 'h2xbr0'
const NET = 'h2xnet'
let tmp = ''
let DIST = ''
const namespaces: string[] = []
let nsSeq = 0

function sh(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, {input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe']})
}

function addNs(role: string): {name: string; path: string} {
  const name = `h2x-${role}${nsSeq++}-${TAG}`
  sh('ip', ['netns', 'add', name])
  namespaces.push(name)
  return {name, path: `/var/run/netns/${name}`}
}

function delNs(name: string): void {
  spawnSync('ip', ['netns', 'del', name])
}

interface Driven {
  ok: boolean
  error?: string
  result?: any
  spawns?: number
  ms?: number
}

/** Runs one of our plugins in-process inside hostNs. */
function ours(hostNs: string, input: Record<string, unknown>): Driven {
  const res = spawnSync('ip', ['netns', 'exec', hostNs, process.execPath, DRIVER, DIST], {
    input: JSON.stringify({ifName: 'eth0', ...input}),
    encoding: 'utf8',
    env: {...process.env, CTRNET_IPTABLES_LOCK: join(tmp, 'xtables.lock')},
  })
  if (!res.stdout) throw new Error(`driver: ${res.stderr}`)
  return JSON.parse(res.stdout) as Driven
}

function oursOk(hostNs: string, input: Record<string, unknown>): any {
  const r = ours(hostNs, input)
  if (!r.ok) throw new Error(`ours ${input.plugin} ${input.command}: ${r.error}`)
  return r.result
}

function run(file: string, args: string[], input: string, env: NodeJS.ProcessEnv = process.env): Promise<{code: number; stdout: string; stderr: string}> {
  return new Promise((res) => {
    const child = spawn(file, args, {env})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => res({code: code ?? 1, stdout, stderr}))
    child.stdin.end(input)
  })
}

/** Runs one reference plugin from /usr/lib/cni inside hostNs. */
function ref(hostNs: string, type: string, command: string, cid: string, netns: string, conf: Record<string, unknown>, ifName = 'eth0') {
  const res = spawnSync('ip', ['netns', 'exec', hostNs, `/usr/lib/cni/${type}`], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    env: {...process.env, CNI_COMMAND: command, CNI_CONTAINERID: cid, CNI_NETNS: netns, CNI_IFNAME: ifName, CNI_PATH: '/usr/lib/cni'},
  })
  return {code: res.status, stdout: res.stdout, stderr: res.stderr}
}

function refOk(hostNs: string, type: string, command: string, cid: string, netns: string, conf: Record<string, unknown>): any {
  const r = ref(hostNs, type, command, cid, netns, conf)
  if (r.code !== 0) throw new Error(`reference ${type} ${command}: ${r.stdout} ${r.stderr}`)
  return r.stdout ? JSON.parse(r.stdout) : undefined
}

function nsJson(ns: string, args: string[]): any[] {
  const out = sh('ip', ['-n', ns, '-j', ...args]).trim()
  return out ? JSON.parse(out) : []
}

function nsCat(ns: string, file: string): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'cat', file], {encoding: 'utf8'})
  return r.status === 0 ? r.stdout.trim() : '<absent>'
}

const vethName = /^veth[0-9a-f]{8}$/

/** Host side: links (veth names masked), bridge addresses, sysctls. */
function hostState(ns: string) {
  const links = nsJson(ns, ['-d', 'addr', 'show']).filter((l) => l.ifname !== 'lo')
  const norm = (n: string) => (vethName.test(n) ? 'vethX' : n)
  const sysfs = (n: string, a: string) => nsCat(ns, `/sys/class/net/${n}/${a}`)
  return {
    links: links
      .map((l) => ({
        name: norm(l.ifname),
        kind: l.linkinfo?.info_kind,
        master: l.master,
        mtu: l.mtu,
        txqlen: l.txqlen ?? 0,
        flags: [...l.flags].sort(),
        promiscuity: l.promiscuity,
        allmulti: l.allmulti,
        operstate: l.operstate,
        addrAssignType: sysfs(l.ifname, 'addr_assign_type'),
        hairpin: l.linkinfo?.info_slave_data?.hairpin,
        vlanFiltering: l.linkinfo?.info_data?.vlan_filtering,
        acceptRa: nsCat(ns, `/proc/sys/net/ipv6/conf/${l.ifname}/accept_ra`),
        addrs: (l.addr_info ?? [])
          .filter((a: any) => a.scope !== 'link')
          .map((a: any) => ({family: a.family, local: a.local, prefixlen: a.prefixlen, broadcast: a.broadcast, scope: a.scope}))
          .sort((a: any, b: any) => a.local.localeCompare(b.local)),
      }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    ipForward: nsCat(ns, '/proc/sys/net/ipv4/ip_forward'),
    ip6Forward: nsCat(ns, '/proc/sys/net/ipv6/conf/all/forwarding'),
    vlans: spawnSync('ip', ['netns', 'exec', ns, 'bridge', '-j', 'vlan', 'show'], {encoding: 'utf8'}).stdout.replace(/veth[0-9a-f]{8}/g, 'vethX'),
    nft: sh('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset']).replace(/veth[0-9a-f]{8}/g, 'vethX').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/g, 'M'),
  }
}

/** Container side: links (MAC-derived data masked), addresses, routes, sysctls. */
function contState(ns: string) {
  const links = nsJson(ns, ['-d', 'addr', 'show'])
  const routes = nsJson(ns, ['route', 'show', 'table', 'all'])
  const ifs = links.map((l) => l.ifname)
  const sys: Record<string, string> = {}
  for (const i of ifs) {
    for (const k of ['ipv4/conf/IF/arp_notify', 'ipv6/conf/IF/accept_dad', 'ipv6/conf/IF/disable_ipv6', 'ipv6/conf/IF/enhanced_dad', 'ipv6/conf/IF/accept_ra']) {
      const key = k.replace('IF', i)
      sys[key] = nsCat(ns, `/proc/sys/net/${key}`)
    }
  }
  return {
    links: links.map((l) => ({
      name: l.ifname,
      kind: l.linkinfo?.info_kind,
      mtu: l.mtu,
      txqlen: l.txqlen ?? 0,
      flags: [...l.flags].sort(),
      operstate: l.operstate,
      promiscuity: l.promiscuity,
      addrAssignType: nsCat(ns, `/sys/class/net/${l.ifname}/addr_assign_type`),
      linkLocal: (l.addr_info ?? []).filter((a: any) => a.scope === 'link').length,
      addrs: (l.addr_info ?? [])
        .filter((a: any) => a.scope !== 'link')
        .map((a: any) => ({family: a.family, local: a.local, prefixlen: a.prefixlen, broadcast: a.broadcast, scope: a.scope, tentative: !!a.tentative}))
        .sort((a: any, b: any) => a.local.localeCompare(b.local)),
    })),
    routes: routes
      .filter((r) => !String(r.dst).startsWith('fe80:'))
      .map((r) => JSON.stringify({type: r.type, dst: r.dst, gateway: r.gateway, dev: r.dev, table: r.table, protocol: r.protocol, scope: r.scope, prefsrc: r.prefsrc, metric: r.metric}))
      .sort(),
    sysctls: sys,
  }
}

/**
 * Operstates follow carrier changes asynchronously (linkwatch batches
 * non-urgent events for up to a second): compare again after a pause before
 * calling a difference real.
 */
function expectSettled<T>(a: () => T, b: () => T): void {
  for (let i = 0; i < 10; i++) {
    if (JSON.stringify(a()) === JSON.stringify(b())) break
    spawnSync('sleep', ['0.5'])
  }
  expect(a()).toEqual(b())
}

/** host-local store: file names, contents and modes. */
function storeState(dataDir: string) {
  const d = join(dataDir, NET)
  if (!existsSync(d)) return {}
  const out: Record<string, string> = {}
  for (const f of readdirSync(d).sort()) {
    out[f] = `${(statSync(join(d, f)).mode & 0o777).toString(8)}:${readFileSync(join(d, f), 'utf8')}`
  }
  return out
}

function ipFiles(dataDir: string): string[] {
  const d = join(dataDir, NET)
  return existsSync(d) ? readdirSync(d).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip')) : []
}

/** Result with random names and MACs masked. */
function normResult(r: any) {
  return JSON.parse(JSON.stringify(r).replace(/veth[0-9a-f]{8}/g, 'vethX').replace(/"mac":"[0-9a-f:]{17}"/g, '"mac":"M"').replace(/\/var\/run\/netns\/h2x-[a-z]+\d+-[a-z0-9]+/g, 'NETNS'))
}

function bridgeConf(extra: Record<string, unknown>, ipam: Record<string, unknown> | undefined, dataDir: string) {
  return {
    cniVersion: '1.0.0',
    name: NET,
    type: 'bridge',
    bridge: BR,
    ...extra,
    ...(ipam ? {ipam: {...ipam, ...(ipam.type === 'host-local' ? {dataDir} : {})}} : {}),
  }
}

const hl = (ranges: unknown, more: Record<string, unknown> = {}) => ({type: 'host-local', ranges, ...more})

interface Case {
  name: string
  extra: Record<string, unknown>
  ipam?: Record<string, unknown>
  cniArgs?: string
  ping?: string
  /** the reference CHECK fails on routes without gw (it filters on gw = nil) */
  refCheckBroken?: boolean
}

const CASES: Case[] = [
  {
    name: "nerdctl's default bridge (isGateway, hairpin, ipMasq off here)",
    extra: {isGateway: true, ipMasq: false, hairpinMode: true},
    ipam: hl([[{gateway: '10.66.0.1', subnet: '10.66.0.0/24'}]], {routes: [{dst: '0.0.0.0/0'}]}),
    ping: '10.66.0.2',
  },
  {name: 'isGateway off', extra: {}, ipam: hl([[{subnet: '10.66.1.0/24'}]])},
  {name: 'mtu 1400 and promiscMode', extra: {isGateway: true, mtu: 1400, promiscMode: true}, ipam: hl([[{subnet: '10.66.2.0/24'}]]), ping: '10.66.2.2'},
  {
    name: 'rangeStart/rangeEnd and requested IP via CNI_ARGS',
    extra: {isGateway: true},
    ipam: hl([[{subnet: '10.66.3.0/24', rangeStart: '10.66.3.100', rangeEnd: '10.66.3.120'}]]),
    cniArgs: 'IgnoreUnknown=1;IP=10.66.3.110',
  },
  {
    name: 'extra routes with gw, isDefaultGateway',
    extra: {isDefaultGateway: true},
    ipam: hl([[{subnet: '10.66.4.0/24'}]], {routes: [{dst: '192.168.77.0/24', gw: '10.66.4.254'}, {dst: '172.31.0.0/16'}]}),
    refCheckBroken: true,
  },
  {
    name: 'dual-stack with default routes',
    extra: {isGateway: true, hairpinMode: true},
    ipam: hl([[{subnet: '10.66.5.0/24'}], [{subnet: 'fd66:5::/64'}]], {routes: [{dst: '0.0.0.0/0'}, {dst: '::/0'}]}),
    ping: '10.66.5.2',
  },
  {name: 'enabledad (waits for DAD before routes)', extra: {isGateway: true, enabledad: true}, ipam: hl([[{subnet: '10.66.11.0/24'}], [{subnet: 'fd66:11::/64'}]], {routes: [{dst: '::/0'}]})},
  {name: 'IPv6 only, isDefaultGateway', extra: {isDefaultGateway: true}, ipam: hl([[{subnet: 'fd66:6::/64', rangeStart: 'fd66:6::10'}]])},
  {name: 'layer 2 only (no ipam)', extra: {}},
  {name: 'macspoofchk (nft bridge table)', extra: {isGateway: true, macspoofchk: true}, ipam: hl([[{subnet: '10.66.10.0/24'}]]), ping: '10.66.10.2'},
  {
    name: 'static IPAM',
    extra: {isGateway: true},
    ipam: {type: 'static', addresses: [{address: '10.66.9.7/24', gateway: '10.66.9.1'}], routes: [{dst: '10.200.0.0/16'}], dns: {nameservers: ['10.66.9.1']}},
    refCheckBroken: true,
  },
]

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'h2x-'))
  // Our own build (tsc emits even when another file of the tree does not
  // typecheck), so other builds of dist/ cannot race with this test.
  DIST = join(tmp, 'dist')
  writeFileSync(join(tmp, 'package.json'), '{"type": "module"}\n')
  symlinkSync(join(ROOT, 'node_modules'), join(tmp, 'node_modules'))
  spawnSync('npx', ['tsc', '-p', '.', '--outDir', DIST], {cwd: ROOT, encoding: 'utf8'})
  if (!existsSync(join(DIST, 'plugins/bridge/index.js'))) throw new Error('build failed')
})

afterAll(() => {
  for (const ns of namespaces.reverse()) delNs(ns)
  if (tmp) rmSync(tmp, {recursive: true, force: true})
})

describe.each(CASES)('bridge: $name', (c) => {
  const cid = 'h2xcid1'
  it('ADD leaves the reference state; CHECK passes both ways; cross-DEL cleans up', () => {
    const rh = addNs('rh')
    const rc = addNs('rc')
    const oh = addNs('oh')
    const oc = addNs('oc')
    const rDir = join(tmp, `ipam-r-${nsSeq}`)
    const oDir = join(tmp, `ipam-o-${nsSeq}`)
    mkdirSync(rDir)
    mkdirSync(oDir)
    const rConf = bridgeConf(c.extra, c.ipam, rDir)
    const oConf = bridgeConf(c.extra, c.ipam, oDir)
    const env = {CNI_ARGS: c.cniArgs ?? ''}
    const rr = spawnSync('ip', ['netns', 'exec', rh.name, '/usr/lib/cni/bridge'], {
      input: JSON.stringify(rConf),
      encoding: 'utf8',
      env: {...process.env, ...env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: rc.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni'},
    })
    expect(rr.status, rr.stdout + rr.stderr).toBe(0)
    const refResult = JSON.parse(rr.stdout)
    const ourResult = oursOk(oh.name, {plugin: 'bridge', command: 'ADD', containerId: cid, netns: oc.path, cniArgs: c.cniArgs ?? '', config: oConf})

    expect(normResult(ourResult)).toEqual(normResult(refResult))
    expect(contState(oc.name)).toEqual(contState(rc.name))
    expectSettled(() => hostState(oh.name), () => hostState(rh.name))
    expect(storeState(oDir)).toEqual(storeState(rDir))

    if (c.ping) {
      const p = spawnSync('ip', ['netns', 'exec', oh.name, 'busybox', 'ping', '-c', '1', '-W', '3', c.ping], {encoding: 'utf8'})
      expect(p.status, p.stdout + p.stderr).toBe(0)
    }

    // CHECK: ours on ours and on the reference's ADD; the reference's on ours
    if (c.ipam) {
      const withPrev = (conf: object, prev: object) => ({...conf, prevResult: prev})
      expect(ours(oh.name, {plugin: 'bridge', command: 'CHECK', containerId: cid, netns: oc.path, config: withPrev(oConf, ourResult)})).toMatchObject({ok: true})
      expect(ours(rh.name, {plugin: 'bridge', command: 'CHECK', containerId: cid, netns: rc.path, config: withPrev(rConf, refResult)})).toMatchObject({ok: true})
      const rcheck = ref(oh.name, 'bridge', 'CHECK', cid, oc.path, withPrev(oConf, ourResult))
      if (!c.refCheckBroken) expect(rcheck.code, rcheck.stdout + rcheck.stderr).toBe(0)
      else expect(rcheck.stdout).toMatch(/Expected Route .* not found/)
    }

    // cross-DEL: ours removes the reference's ADD, the reference removes ours
    oursOk(rh.name, {plugin: 'bridge', command: 'DEL', containerId: cid, netns: rc.path, cniArgs: c.cniArgs ?? '', config: {...rConf, prevResult: refResult}})
    const rd = spawnSync('ip', ['netns', 'exec', oh.name, '/usr/lib/cni/bridge'], {
      input: JSON.stringify({...oConf, prevResult: ourResult}),
      encoding: 'utf8',
      env: {...process.env, ...env, CNI_COMMAND: 'DEL', CNI_CONTAINERID: cid, CNI_NETNS: oc.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni'},
    })
    expect(rd.status, rd.stdout + rd.stderr).toBe(0)
    for (const [h, ct, dir] of [[rh, rc, rDir], [oh, oc, oDir]] as const) {
      expect(nsJson(ct.name, ['link', 'show']).map((l) => l.ifname)).toEqual(['lo'])
      expect(nsJson(h.name, ['link', 'show']).map((l) => l.ifname).filter((n) => vethName.test(n))).toEqual([])
      expect(ipFiles(dir)).toEqual([])
    }
    // after both DELs the two hosts are still equal (bridge kept, like the
    // reference). The bridge's carrier-off reaches its operstate through
    // linkwatch, which other tests' netns teardowns can delay for seconds
    // (rtnl contention): compare without operstate and carrier flags here.
    const noCarrier = (st: ReturnType<typeof hostState>) => ({
      ...st,
      links: st.links.map((l) => ({...l, operstate: undefined, flags: l.flags.filter((f: string) => f !== 'NO-CARRIER' && f !== 'LOWER_UP')})),
    })
    expectSettled(() => noCarrier(hostState(oh.name)), () => noCarrier(hostState(rh.name)))
    // DEL again is fine
    oursOk(oh.name, {plugin: 'bridge', command: 'DEL', containerId: cid, netns: oc.path, config: {...oConf, prevResult: ourResult}})
    for (const ns of [rh, rc, oh, oc]) delNs(ns.name)
  })
})

describe('bridge: traffic, failures, vanished netns', () => {
  it('vlan: fails like the reference when the kernel lacks vlan filtering, creating nothing', () => {
    const h = addNs('wh')
    const c = addNs('wc')
    const conf = bridgeConf({vlan: 100}, hl([[{subnet: '10.66.8.0/24'}]]), join(tmp, 'ipam-vlan'))
    const r = ref(h.name, 'bridge', 'ADD', 'h2xw', c.path, conf)
    const o = ours(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xw', netns: c.path, config: conf})
    if (r.code === 0) {
      // a kernel with vlan filtering: our ADD must work too
      expect(o.ok, o.error).toBe(true)
    } else {
      expect(r.stdout).toMatch(/not supported/)
      expect(o.ok).toBe(false)
      expect(o.error).toMatch(/not supported/)
      expect(nsJson(h.name, ['link', 'show']).map((l) => l.ifname)).toEqual(['lo'])
      expect(ipFiles(join(tmp, 'ipam-vlan'))).toEqual([])
    }
  })

  it('two containers on one bridge reach each other and the host', () => {
    const h = addNs('th')
    const c1 = addNs('tc')
    const c2 = addNs('tc')
    const dir = join(tmp, 'ipam-traffic')
    const conf = bridgeConf({isGateway: true, hairpinMode: true}, hl([[{subnet: '10.67.0.0/24'}]], {routes: [{dst: '0.0.0.0/0'}]}), dir)
    const r1 = oursOk(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xa', netns: c1.path, config: conf})
    const r2 = oursOk(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xb', netns: c2.path, config: conf})
    expect(r1.ips[0].address).toBe('10.67.0.2/24')
    expect(r2.ips[0].address).toBe('10.67.0.3/24')
    const ping = (ns: string, ip: string) => spawnSync('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', '3', ip], {encoding: 'utf8'})
    expect(ping(c1.name, '10.67.0.3').status).toBe(0)
    expect(ping(c2.name, '10.67.0.2').status).toBe(0)
    expect(ping(h.name, '10.67.0.3').status).toBe(0)
    expect(ping(c1.name, '10.67.0.1').status).toBe(0)
    oursOk(h.name, {plugin: 'bridge', command: 'DEL', containerId: 'h2xa', netns: c1.path, config: {...conf, prevResult: r1}})
    oursOk(h.name, {plugin: 'bridge', command: 'DEL', containerId: 'h2xb', netns: c2.path, config: {...conf, prevResult: r2}})
    expect(ipFiles(dir)).toEqual([])
  })

  it('concurrent ADDs (ours and the reference) on a new bridge: all succeed, no address twice', async () => {
    const h = addNs('ph')
    const dir = join(tmp, 'ipam-parallel')
    const conf = bridgeConf({isGateway: true, hairpinMode: true}, hl([[{subnet: '10.72.0.0/24'}], [{subnet: 'fd72::/64'}]]), dir)
    const jobs: Array<Promise<{code: number; stdout: string; stderr: string}>> = []
    const ctrs: Array<{name: string; path: string}> = []
    for (let i = 0; i < 10; i++) {
      const c = addNs('pc')
      ctrs.push(c)
      const cid = `h2xp${i}`
      if (i % 3 === 2) {
        jobs.push(run('ip', ['netns', 'exec', h.name, '/usr/lib/cni/bridge'], JSON.stringify(conf), {
          ...process.env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: c.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni',
        }))
      } else {
        jobs.push(run('ip', ['netns', 'exec', h.name, process.execPath, DRIVER, DIST], JSON.stringify({plugin: 'bridge', command: 'ADD', containerId: cid, netns: c.path, ifName: 'eth0', config: conf})))
      }
    }
    const outs = await Promise.all(jobs)
    const addrs: string[] = []
    outs.forEach((o, i) => {
      const parsed = JSON.parse(o.stdout)
      const result = i % 3 === 2 ? parsed : parsed.result
      expect(i % 3 === 2 ? o.code : parsed.ok, o.stdout + o.stderr).toBe(i % 3 === 2 ? 0 : true)
      addrs.push(...result.ips.map((x: {address: string}) => x.address))
    })
    expect(new Set(addrs).size).toBe(20)
    expect(ipFiles(dir).length).toBe(20)
    const br = nsJson(h.name, ['addr', 'show', 'dev', BR])[0]
    expect(br.addr_info.filter((a: any) => a.scope === 'global').map((a: any) => `${a.local}/${a.prefixlen}`).sort()).toEqual(['10.72.0.1/24', 'fd72::1/64'])
    expect(nsJson(h.name, ['link', 'show']).filter((l) => l.master === BR).length).toBe(10)
    for (const c of ctrs) delNs(c.name)
  })

  it('a failed ADD leaves no veth and no lease', () => {
    const h = addNs('fh')
    const c = addNs('fc')
    const dir = join(tmp, 'ipam-fail')
    const conf = bridgeConf({isGateway: true}, hl([[{subnet: '10.68.0.0/24'}]]), dir)
    // eth0 already taken in the container
    sh('ip', ['-n', c.name, 'link', 'add', 'name', 'eth0', 'type', 'veth', 'peer', 'name', 'h2xpeer'])
    const r = ours(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xf', netns: c.path, config: conf})
    expect(r.ok).toBe(false)
    expect(r.error).toMatch(/already exists/)
    expect(nsJson(h.name, ['link', 'show']).map((l) => l.ifname).filter((n) => vethName.test(n))).toEqual([])
    expect(ipFiles(dir)).toEqual([])
    // a requested address outside the range: IPAM fails, the veth is removed again
    sh('ip', ['-n', c.name, 'link', 'del', 'eth0'])
    const r2 = ours(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xf', netns: c.path, cniArgs: 'IP=10.99.0.5', config: conf})
    expect(r2.ok).toBe(false)
    expect(nsJson(h.name, ['link', 'show']).map((l) => l.ifname).filter((n) => vethName.test(n))).toEqual([])
    expect(nsJson(c.name, ['link', 'show']).map((l) => l.ifname)).toEqual(['lo'])
    expect(ipFiles(dir)).toEqual([])
    // bad IPAM config or a netns path that is no namespace: nothing is created, not even the bridge
    const h2 = addNs('fh')
    const dir2 = join(tmp, 'ipam-fail2')
    for (const [ipam, netns, msg] of [
      [hl([[{subnet: '10.68.0.0/33'}]]), c.path, /CIDR|invalid/],
      [hl([[{subnet: '10.68.0.0/24', rangeStart: '10.99.0.5'}]]), c.path, /RangeStart/],
      [hl([[{subnet: '10.68.0.0/24'}]]), '/etc/hostname', /not a network namespace/],
      [{ranges: [[{subnet: '10.68.0.0/24'}]]}, c.path, /missing "type"/],
    ] as const) {
      const r3 = ours(h2.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xg', netns, config: bridgeConf({isGateway: true}, ipam as Record<string, unknown>, dir2)})
      expect(r3.ok).toBe(false)
      expect(r3.error).toMatch(msg)
      expect(nsJson(h2.name, ['link', 'show']).map((l) => l.ifname)).toEqual(['lo'])
      expect(existsSync(dir2) ? readdirSync(dir2) : []).toEqual([])
    }
  })

  it('refuses values that could inject ip batch commands, creating nothing', () => {
    const h = addNs('ih')
    const c = addNs('ic')
    const dir = join(tmp, 'ipam-inject')
    for (const [ifName, bridge] of [['eth0\nlink del lo', BR], ['eth0', 'br x'], ['eth0', 'a"b'], ['eth0 #', BR]]) {
      const conf = bridgeConf({bridge}, hl([[{subnet: '10.69.0.0/24'}]]), dir)
      const r = ours(h.name, {plugin: 'bridge', command: 'ADD', containerId: 'h2xi', netns: c.path, ifName, config: conf})
      expect(r.ok).toBe(false)
      expect(r.error).toMatch(/invalid/)
    }
    expect(nsJson(h.name, ['link', 'show']).map((l) => l.ifname)).toEqual(['lo'])
    expect(ipFiles(dir)).toEqual([])
  })

  it('DEL with a vanished or empty netns still releases the lease and the masquerade rules', () => {
    const h = addNs('vh')
    const dir = join(tmp, 'ipam-vanish')
    const conf = bridgeConf({isGateway: true, ipMasq: true}, hl([[{subnet: '10.70.0.0/24'}]]), dir)
    for (const mode of ['vanished', 'empty']) {
      const c = addNs('vc')
      const cid = `h2xv${mode}`
      const r = oursOk(h.name, {plugin: 'bridge', command: 'ADD', containerId: cid, netns: c.path, config: conf})
      const nat = () => sh('ip', ['netns', 'exec', h.name, 'iptables-save', '-t', 'nat'])
      expect(nat()).toContain(`id: \\"${cid}\\"`)
      expect(ipFiles(dir).length).toBe(1)
      delNs(c.name)
      oursOk(h.name, {plugin: 'bridge', command: 'DEL', containerId: cid, netns: mode === 'empty' ? '' : c.path, config: {...conf, prevResult: r}})
      expect(ipFiles(dir)).toEqual([])
      expect(nat()).not.toContain(cid)
      expect(nat()).not.toMatch(/:CNI-[0-9a-f]{24}/)
    }
  })
})

describe('loopback, tuning', () => {
  it('loopback: same result and state as the reference; DEL tolerates a missing netns', () => {
    const h = addNs('lh')
    const rc = addNs('lr')
    const oc = addNs('lo')
    const conf = {cniVersion: '1.0.0', name: NET, type: 'loopback'}
    const rres = refOk(h.name, 'loopback', 'ADD', 'h2xl', rc.path, conf)
    const ores = oursOk(h.name, {plugin: 'loopback', command: 'ADD', containerId: 'h2xl', netns: oc.path, config: conf})
    expect(normResult(ores)).toEqual(normResult(rres))
    expect(contState(oc.name)).toEqual(contState(rc.name))
    expect(ours(h.name, {plugin: 'loopback', command: 'CHECK', containerId: 'h2xl', netns: oc.path, config: {...conf, prevResult: ores}}).ok).toBe(true)
    oursOk(h.name, {plugin: 'loopback', command: 'DEL', containerId: 'h2xl', netns: oc.path, config: conf})
    refOk(h.name, 'loopback', 'DEL', 'h2xl', rc.path, conf)
    expect(contState(oc.name)).toEqual(contState(rc.name))
    delNs(oc.name)
    expect(ours(h.name, {plugin: 'loopback', command: 'DEL', containerId: 'h2xl', netns: oc.path, config: conf}).ok).toBe(true)
    expect(ours(h.name, {plugin: 'loopback', command: 'DEL', containerId: 'h2xl', netns: '', config: conf}).ok).toBe(true)
  })

  it('tuning: sysctl, mac, mtu, promisc, allmulti, backup file and restore equal the reference', () => {
    const h = addNs('uh')
    const rc = addNs('ur')
    const oc = addNs('uo')
    const rDir = join(tmp, 'tuning-r')
    const oDir = join(tmp, 'tuning-o')
    const bconf = (dir: string) => bridgeConf({isGateway: true}, hl([[{subnet: '10.71.0.0/24'}]]), dir)
    // the same base interface on both sides (reference bridge), then tuning
    const rPrev = refOk(h.name, 'bridge', 'ADD', 'h2xr', rc.path, bconf(join(tmp, 'ipam-ur')))
    const oPrev = refOk(h.name, 'bridge', 'ADD', 'h2xo', oc.path, bconf(join(tmp, 'ipam-uo')))
    const tconf = (dir: string, prev: unknown) => ({
      cniVersion: '1.0.0',
      name: NET,
      type: 'tuning',
      dataDir: dir,
      sysctl: {'net.ipv4.conf.IFNAME.arp_filter': '1', 'net.ipv4.conf.all.arp_ignore': '2'},
      mac: 'c2:11:22:33:44:55',
      mtu: 1300,
      promisc: true,
      allmulti: true,
      prevResult: prev,
    })
    const rres = refOk(h.name, 'tuning', 'ADD', 'h2xt', rc.path, tconf(rDir, rPrev))
    const ores = oursOk(h.name, {plugin: 'tuning', command: 'ADD', containerId: 'h2xt', netns: oc.path, config: tconf(oDir, oPrev)})
    expect(ores.interfaces[2].mac).toBe('c2:11:22:33:44:55')
    expect(normResult(ores)).toEqual(normResult(rres))
    const cs = (ns: string) => {
      const s = contState(ns)
      return {s, arpFilter: nsCat(ns, '/proc/sys/net/ipv4/conf/eth0/arp_filter'), arpIgnore: nsCat(ns, '/proc/sys/net/ipv4/conf/all/arp_ignore'), mac: nsCat(ns, '/sys/class/net/eth0/address')}
    }
    expect(cs(oc.name)).toEqual(cs(rc.name))
    const backup = (dir: string) => readFileSync(join(dir, 'h2xt_eth0.json'), 'utf8')
    // the original MACs differ (random); mask them
    expect(backup(oDir).replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/, 'M')).toEqual(backup(rDir).replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/, 'M'))
    expect((statSync(join(oDir, 'h2xt_eth0.json')).mode & 0o777).toString(8)).toBe('600')
    expect(ours(h.name, {plugin: 'tuning', command: 'CHECK', containerId: 'h2xt', netns: oc.path, config: tconf(oDir, ores)}).ok).toBe(true)
    // the reference CHECK does not substitute IFNAME (it reads .../conf/IFNAME/...): check it without that key
    const noIfname = {...tconf(oDir, ores), sysctl: {'net.ipv4.conf.all.arp_ignore': '2'}}
    const rcheck = ref(h.name, 'tuning', 'CHECK', 'h2xt', oc.path, noIfname)
    expect(rcheck.code, rcheck.stdout).toBe(0)
    // DEL restores (ours on the reference's ADD, the reference on ours)
    oursOk(h.name, {plugin: 'tuning', command: 'DEL', containerId: 'h2xt', netns: rc.path, config: tconf(rDir, rres)})
    refOk(h.name, 'tuning', 'DEL', 'h2xt', oc.path, tconf(oDir, ores))
    expect(existsSync(join(oDir, 'h2xt_eth0.json'))).toBe(false)
    expect(existsSync(join(rDir, 'h2xt_eth0.json'))).toBe(false)
    expect(nsCat(rc.name, '/sys/class/net/eth0/address')).toBe(rPrev.interfaces[2].mac)
    expect(nsCat(oc.name, '/sys/class/net/eth0/address')).toBe(oPrev.interfaces[2].mac)
    expect(cs(oc.name).s).toEqual(cs(rc.name).s)
  })
})
