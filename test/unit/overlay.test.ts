/**
 * Issue 13, the pure parts of the overlay driver: slices of a subnet, the
 * choice of candidates, etcd records, the conflist `-d overlay` writes and
 * its bad options, the plugin's config parser, the VXLAN/FDB batch lines.
 */
import {lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync as symlink, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {installCniPlugin, runAsCniPlugin} from '../../src/app/cni.js'
import {formatCidr, parseCidr, sliceCount, subnetAt} from '../../src/kernel/ip/addr.js'
import {renderBridgeBatch, renderBatch} from '../../src/kernel/ip/batch.js'
import {cmdFdbReplace, cmdNeighReplace, cmdRouteReplaceOnlink, cmdVxlanAdd} from '../../src/kernel/ip/vxlan.js'
import {validateConflist} from '../../src/netconf/schema.js'
import {defaultCreateOptions, renderNetwork} from '../../src/netconf/render.js'
import {confSubnets, parseCidr as netconfCidr} from '../../src/netconf/subnet.js'
import {isOverlayType, loadOverlayConf, OVERLAY_TYPE} from '../../src/plugins/overlay/config.js'
import {embeddedPlugin} from '../../src/plugins/registry/index.js'
import {vtepMac, vtepOf} from '../../src/services/overlay/dataplane.js'
import {candidateSlices, parseRecord, sliceKey} from '../../src/services/overlay/lease.js'
import {bridgeConfFor} from '../../src/plugins/overlay/index.js'
import {EtcdClient, EtcdError, parseEndpoints, prefixEnd, tlsProblem} from '../../src/sys/etcd.js'
import type {NetConfList, PluginNetConf} from '../../src/plugins/types.js'

const net = parseCidr('10.200.0.0/16')

describe('slices of a subnet', () => {
  it('enumerates equal slices with ip-address arithmetic', () => {
    expect(sliceCount(net, 24)).toBe(256n)
    expect(formatCidr(subnetAt(net, 24, 0n)!)).toBe('10.200.0.0/24')
    expect(formatCidr(subnetAt(net, 24, 3n)!)).toBe('10.200.3.0/24')
    expect(formatCidr(subnetAt(net, 24, 255n)!)).toBe('10.200.255.0/24')
    expect(subnetAt(net, 24, 256n)).toBeUndefined()
    expect(formatCidr(subnetAt(net, 26, 5n)!)).toBe('10.200.1.64/26')
    expect(sliceCount(net, 8)).toBe(0n)
  })

  it('candidates: every free slice but the first, the preferred one first', () => {
    const taken = new Set(['10.200.1.0/24', '10.200.2.0/24'])
    const c = candidateSlices(parseCidr('10.200.0.0/22'), 24, taken).map(formatCidr)
    expect(c).toEqual(['10.200.3.0/24'])
    const all = candidateSlices(net, 24, new Set(), '10.200.77.0/24').map(formatCidr)
    expect(all).toHaveLength(255)
    expect(all[0]).toBe('10.200.77.0/24')
    expect(new Set(all).size).toBe(255)
    expect(all).not.toContain('10.200.0.0/24')
    // a preferred slice somebody holds is not tried first
    expect(candidateSlices(net, 24, new Set(['10.200.77.0/24']), '10.200.77.0/24').map(formatCidr)).not.toContain('10.200.77.0/24')
  })
})

describe('etcd records', () => {
  it('parses our subnet keys and ignores anything else', () => {
    const slice = parseCidr('10.200.3.0/24')
    const key = sliceKey(4200, slice)
    expect(key).toBe('/ctrnet/overlay/4200/subnets/10.200.3.0-24')
    const kv = {key, value: JSON.stringify({publicIp: '192.168.1.2', vtepMac: '02:AA:bb:cc:dd:ee'}), createRevision: '5', modRevision: '5', lease: '77'}
    expect(parseRecord(4200, kv)).toEqual({slice, publicIp: '192.168.1.2', vtepMac: '02:aa:bb:cc:dd:ee', lease: '77'})
    expect(parseRecord(4201, kv)).toBeUndefined()
    expect(parseRecord(4200, {...kv, value: '{"publicIp":"x"}'})).toBeUndefined()
    expect(parseRecord(4200, {...kv, key: `${key}/x`})).toBeUndefined()
  })

  it('prefix ends and endpoints', () => {
    expect(prefixEnd('/ctrnet/overlay/1/subnets/')).toBe('/ctrnet/overlay/1/subnets0')
    expect(parseEndpoints('http://10.0.0.1:2379, https://etcd.example:2379')).toEqual(['http://10.0.0.1:2379', 'https://etcd.example:2379'])
    expect(() => parseEndpoints('ftp://x')).toThrow(/invalid endpoint/)
    expect(() => parseEndpoints('http://x:2379/path')).toThrow(/no path/)
  })
})

describe('network create -d overlay', () => {
  const create = (options: string[], subnets = ['10.200.0.0/16'], used: string[] = []) =>
    renderNetwork(defaultCreateOptions('ovl', {driver: 'overlay', subnets, options}), {usedSubnets: used.map((u) => netconfCidr(u)!)})

  it('writes the overlay meta plugin, then portmap, firewall and tuning; the schema takes it', async () => {
    const r = create(['etcd=http://10.0.0.10:2379', 'vni=4200', 'mtu=1400', 'underlay=eth1'])
    expect(r.conf.plugins).toEqual([
      {type: 'ctrnet-overlay', etcd: 'http://10.0.0.10:2379', vni: 4200, subnet: '10.200.0.0/16', hostSubnetSize: 24, underlay: 'eth1', mtu: 1400, bridge: 'ctrov4200'},
      {type: 'portmap', capabilities: {portMappings: true}},
      {type: 'firewall', ingressPolicy: 'same-bridge'},
      {type: 'tuning'},
    ])
    await validateConflist('t', r.conf)
  })

  it('the schema takes the legacy type overlay too, and no other', async () => {
    const r = create(['etcd=http://10.0.0.10:2379', 'vni=4200'])
    const withType = (type: string): NetConfList => ({...r.conf, plugins: [{...r.conf.plugins[0]!, type}, ...r.conf.plugins.slice(1)]})
    await validateConflist('t', withType('overlay'))
    await expect(validateConflist('t', withType('flannel'))).rejects.toThrow()
  })

  it('refuses bad options with one line each', () => {
    const e = 'etcd=http://10.0.0.10:2379'
    expect(() => create([e, 'vni=0'])).toThrow(/^network create ovl : invalid -o vni="0": must be an integer 1..16777215$/)
    expect(() => create([e, 'vni=16777216'])).toThrow(/vni.*1..16777215/)
    expect(() => create([e, 'vni=x'])).toThrow(/vni.*1..16777215/)
    expect(() => create([e, 'vni=5'], ['10.200.0.0/24'])).toThrow(/too small for host subnets of \/24/)
    expect(() => create([e, 'vni=5', 'host-subnet-size=16'], ['10.200.0.0/16'])).toThrow(/too small for host subnets of \/16/)
    expect(() => create([e, 'vni=5', 'host-subnet-size=31'])).toThrow(/host-subnet-size.*8..30/)
    expect(() => create(['vni=5'])).toThrow(/needs -o etcd=/)
    expect(() => create([e])).toThrow(/needs -o vni=/)
    expect(() => create([e, 'vni=5'], [])).toThrow(/exactly one --subnet/)
    expect(() => create([e, 'vni=5', 'underlay=bad name'])).toThrow(/underlay/)
    expect(() => create([e, 'vni=5', 'etcd-ca=/x'])).toThrow(/need https:\/\/ endpoints, not "http:\/\/10.0.0.10:2379"/)
    const s = 'etcd=https://10.0.0.10:2379'
    expect(() => create([s, 'vni=5', 'etcd-cert=/c.pem'])).toThrow(/^network create ovl : -o etcd-cert and -o etcd-key go together$/)
    expect(() => create([s, 'vni=5', 'etcd-ca=ca.pem'])).toThrow(/invalid -o etcd-ca="ca.pem": must be an absolute file path/)
    expect(() => create([s, 'vni=5', 'etcd-key=/k\n'])).toThrow(/invalid -o etcd-key=.*absolute file path/)
    expect(() => create([e, 'vni=5', 'frob=1'])).toThrow(/unsupported "overlay" network option "frob"/)
    expect(() => create([e, 'vni=5'], ['10.200.0.0/16'], ['10.200.5.0/24'])).toThrow(/overlaps/)
  })
})

describe('TLS to etcd', () => {
  const entry = (over: Record<string, unknown> = {}): PluginNetConf => ({
    type: 'overlay', name: 'ovl', cniVersion: '1.0.0', etcd: 'https://10.0.0.10:2379,https://10.0.0.11:2379', vni: 4200, subnet: '10.200.0.0/16', hostSubnetSize: 24, bridge: 'ctrov4200', ...over,
  })

  it('create writes the PEM file paths, and the schema takes them', async () => {
    const r = renderNetwork(defaultCreateOptions('ovl', {driver: 'overlay', subnets: ['10.200.0.0/16'], options: ['etcd=https://10.0.0.10:2379', 'vni=4200', 'etcd-ca=/etc/ctrnet/ca.pem', 'etcd-cert=/etc/ctrnet/host.pem', 'etcd-key=/etc/ctrnet/host-key.pem']}), {usedSubnets: []})
    expect(r.conf.plugins[0]).toMatchObject({etcd: 'https://10.0.0.10:2379', etcdCa: '/etc/ctrnet/ca.pem', etcdCert: '/etc/ctrnet/host.pem', etcdKey: '/etc/ctrnet/host-key.pem'})
    await validateConflist('t', r.conf)
    await expect(validateConflist('t', {...r.conf, plugins: [{...r.conf.plugins[0], etcdCa: 'ca.pem'}, ...r.conf.plugins.slice(1)]})).rejects.toThrow(/refusing to write an invalid conflist/)
  })

  it('the plugin reads them and checks them against the endpoints', () => {
    expect(loadOverlayConf(entry({etcdCa: '/ca.pem', etcdCert: '/c.pem', etcdKey: '/k.pem'})).etcdTls).toEqual({ca: '/ca.pem', cert: '/c.pem', key: '/k.pem'})
    expect(loadOverlayConf(entry({etcdCa: '/ca.pem'})).etcdTls).toEqual({ca: '/ca.pem'})
    expect(loadOverlayConf(entry()).etcdTls).toBeUndefined()
    expect(() => loadOverlayConf(entry({etcdKey: '/k.pem'}))).toThrow(/etcd-cert and etcd-key go together/)
    expect(() => loadOverlayConf(entry({etcdCa: 'ca.pem'}))).toThrow(/etcd-ca must be an absolute file path/)
    expect(() => loadOverlayConf(entry({etcd: 'https://a:1,http://b:2', etcdCa: '/ca.pem'}))).toThrow(/endpoint http:\/\/b:2 is not https/)
    expect(() => new EtcdClient(['http://a:1'], {tls: {ca: '/ca.pem'}})).toThrow(EtcdError)
    expect(tlsProblem(['https://a:1'], {cert: '/c', key: '/k'})).toBeUndefined()
  })
})

describe('the overlay plugin type', () => {
  it('is ctrnet-overlay, and overlay in older conflists', () => {
    expect(OVERLAY_TYPE).toBe('ctrnet-overlay')
    expect(isOverlayType('ctrnet-overlay')).toBe(true)
    expect(isOverlayType('overlay')).toBe(true)
    for (const t of ['bridge', 'Overlay', 'ctrnet-overlay ', '', undefined, null, 1, {}]) expect(isOverlayType(t)).toBe(false)
  })

  it('either type runs in-process, needs the same programs, and claims its subnet', async () => {
    const embedded = embeddedPlugin('overlay')
    expect(embedded).toBeDefined()
    expect(embeddedPlugin('ctrnet-overlay')).toBe(embedded)
    const programsOf = (type: string) => {
      const p = embeddedPlugin(type)!
      return p.programs(p.parse({type, name: 'o', cniVersion: '1.0.0', etcd: 'http://10.0.0.10:2379', vni: 42, subnet: '10.200.0.0/16'}, 'plugins[0]', {command: 'ADD', containerId: 'c', ifName: 'eth0', args: []}))
    }
    expect(programsOf('ctrnet-overlay')).toEqual(programsOf('overlay'))
    expect(programsOf('ctrnet-overlay')).toContain('bridge')
    for (const type of ['ctrnet-overlay', 'overlay']) {
      const conf = {cniVersion: '1.0.0', name: 'o', plugins: [{type, subnet: '10.200.0.0/16'}]} as NetConfList
      expect(confSubnets(conf).map((c) => c.network)).toEqual(['10.200.0.0/16'])
    }
  })
})

describe('ctrnet cni plugin: VERSION and --install', () => {
  const env = {command: 'VERSION', containerId: '', netns: '', ifName: '', cniArgs: '', cniPath: []}
  const s = {cacheDir: '/nonexistent', mode: 'embedded' as const}

  it('VERSION names every supported version, whatever stdin holds', async () => {
    for (const [stdin, v] of [['{"cniVersion":"1.1.0"}', '1.1.0'], ['{"cniVersion":"0.4.0"}', '0.4.0'], ['', '1.1.0'], ['{"cniVersion":"0.1.0"}', '1.1.0']]) {
      const out = await runAsCniPlugin(s, env, stdin!)
      expect(out.exitCode).toBe(0)
      expect(JSON.parse(out.stdout)).toEqual({cniVersion: v, supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']})
    }
  })

  it('installs DIR/ctrnet-overlay as a link to the real entry, atomically and idempotently', () => {
    const d = mkdtempSync(join(tmpdir(), 'ctrnet-inst-'))
    try {
      const real = join(d, 'pkg', 'bin', 'run.js')
      mkdirSync(join(d, 'pkg', 'bin'), {recursive: true})
      writeFileSync(real, '')
      const bin = join(d, 'cni-bin')
      mkdirSync(bin)
      // through a link, as npm's bin link: the installed link names the real file
      const viaLink = join(d, 'ctrnet')
      symlink(real, viaLink)
      expect(installCniPlugin(bin, viaLink)).toBe(join(bin, 'ctrnet-overlay'))
      expect(readlinkSync(join(bin, 'ctrnet-overlay'))).toBe(realpathSync(real))
      const ino = lstatSync(join(bin, 'ctrnet-overlay')).ino
      expect(installCniPlugin(bin, real)).toBe(join(bin, 'ctrnet-overlay'))
      expect(lstatSync(join(bin, 'ctrnet-overlay')).ino).toBe(ino)
      // a stale file or link of that name is replaced; no temp file stays
      rmSync(join(bin, 'ctrnet-overlay'))
      writeFileSync(join(bin, 'ctrnet-overlay'), '#!/bin/sh\nexec ctrnet cni plugin\n')
      installCniPlugin(bin, real)
      expect(readlinkSync(join(bin, 'ctrnet-overlay'))).toBe(realpathSync(real))
      expect(readdirSync(bin)).toEqual(['ctrnet-overlay'])
      // one line naming what is wrong
      expect(() => installCniPlugin(join(d, 'missing'), real)).toThrow(/^cni plugin --install : .*missing does not exist/)
      expect(() => installCniPlugin(real, real)).toThrow(/is not a directory$/)
      expect(() => installCniPlugin(bin, join(d, 'nothing.js'))).toThrow(/entry .*nothing\.js is missing$/)
      rmSync(join(bin, 'ctrnet-overlay'))
      mkdirSync(join(bin, 'ctrnet-overlay'))
      expect(() => installCniPlugin(bin, real)).toThrow(/^cni plugin --install : cannot install .*ctrnet-overlay: /)
      expect(readdirSync(bin)).toEqual(['ctrnet-overlay'])
    } finally {
      rmSync(d, {recursive: true, force: true})
    }
  })
})

describe('the overlay plugin', () => {
  const entry = (over: Record<string, unknown> = {}): PluginNetConf => ({
    type: 'overlay',
    name: 'ovl',
    cniVersion: '1.0.0',
    etcd: 'http://10.0.0.10:2379',
    vni: 4200,
    subnet: '10.200.0.0/16',
    hostSubnetSize: 24,
    bridge: 'ctrov4200',
    ...over,
  })

  it('parses its entry', () => {
    const o = loadOverlayConf(entry({underlay: '192.168.1.2', leaseTTL: 30}))
    expect(o).toMatchObject({vni: 4200, hostSubnetSize: 24, underlay: {ip: '192.168.1.2'}, leaseTtl: 30, mtu: 0, bridge: 'ctrov4200', stateDir: '/var/lib/ctrnet/overlay'})
    expect(loadOverlayConf(entry({underlay: 'eth1'})).underlay).toEqual({dev: 'eth1'})
    expect(() => loadOverlayConf(entry({vni: 0}))).toThrow(/vni must be an integer 1..16777215/)
    expect(() => loadOverlayConf(entry({subnet: '10.200.1.0/16'}))).toThrow(/host bits/)
    expect(() => loadOverlayConf(entry({subnet: '10.200.0.0/24'}))).toThrow(/too small/)
    expect(() => loadOverlayConf(entry({name: '../x'}))).toThrow(/not a file name/)
    expect(() => loadOverlayConf(entry({etcd: 'http://a:1/x'}))).toThrow(/invalid endpoint/)
    expect(() => loadOverlayConf(entry({etcd: ''}))).toThrow(/^overlay: etcd must be a non-empty string$/)
  })

  it('delegates to bridge + host-local with this host\'s slice', () => {
    const o = loadOverlayConf(entry())
    const b = bridgeConfFor(o, entry({runtimeConfig: {portMappings: []}}), '10.200.3.0/24', 1450)
    expect(b).toEqual({
      type: 'bridge',
      name: 'ovl',
      cniVersion: '1.0.0',
      bridge: 'ctrov4200',
      isGateway: true,
      mtu: 1450,
      hairpinMode: true,
      ipam: {type: 'host-local', ranges: [[{subnet: '10.200.3.0/24'}]], routes: [{dst: '0.0.0.0/0'}]},
      runtimeConfig: {portMappings: []},
    })
  })

  it('VTEP: the slice\'s network address; MAC stable per VNI and underlay address, locally administered', () => {
    expect(vtepOf({slice: parseCidr('10.200.3.0/24')})).toBe('10.200.3.0')
    const m = vtepMac(4200, '192.168.1.2')
    expect(m).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/)
    expect(parseInt(m.slice(0, 2), 16) & 0x03).toBe(0x02)
    expect(vtepMac(4200, '192.168.1.2')).toBe(m)
    expect(vtepMac(4200, '192.168.1.3')).not.toBe(m)
  })
})

describe('VXLAN batch lines', () => {
  it('renders flannel\'s device, neighbour, route and FDB entries', () => {
    expect(renderBatch([cmdVxlanAdd({name: 'ctrnet.4200', vni: 4200, local: '192.168.1.2', dev: 'eth0', port: 4789, mtu: 1450, mac: '02:00:00:00:00:01'})])).toBe(
      'link add name ctrnet.4200 mtu 1450 address 02:00:00:00:00:01 type vxlan id 4200 local 192.168.1.2 dev eth0 dstport 4789 nolearning\n',
    )
    expect(renderBatch([cmdNeighReplace('ctrnet.4200', '10.200.3.0', '02:00:00:00:00:02'), cmdRouteReplaceOnlink('10.200.3.0/24', '10.200.3.0', 'ctrnet.4200')])).toBe(
      'neigh replace 10.200.3.0 lladdr 02:00:00:00:00:02 dev ctrnet.4200 nud permanent\nroute replace 10.200.3.0/24 via 10.200.3.0 dev ctrnet.4200 onlink\n',
    )
    expect(renderBridgeBatch([cmdFdbReplace('ctrnet.4200', '02:00:00:00:00:02', '192.168.1.3')])).toBe('fdb replace 02:00:00:00:00:02 dev ctrnet.4200 dst 192.168.1.3 self permanent\n')
  })

  it('refuses what is not typed', () => {
    expect(() => cmdVxlanAdd({name: 'ctrnet.4200', vni: 2 ** 24, local: '192.168.1.2', dev: 'eth0', port: 4789, mtu: 1450})).toThrow(/vni/)
    expect(() => cmdFdbReplace('ctrnet.1', '02:00:00:00:00:02', '1.2.3.4\nflush')).toThrow()
    expect(() => renderBridgeBatch([['fdb', 'flush', 'dev', 'x']])).toThrow(/not an fdb verb/)
    expect(() => renderBridgeBatch([['fdb', 'add', '02:00:00:00:00:02', 'dev', 'x', 'dst', 'nohost']])).toThrow(/is not an IP address/)
    expect(() => renderBatch([['neigh', 'replace', '10.0.0.1', 'lladdr', 'zz', 'dev', 'x']])).toThrow(/is not a MAC address/)
  })
})
