import {describe, expect, it} from 'vitest'
import * as validate from '../../src/libcni/validate.js'
import {parseRequest} from '../../src/libcni/chain.js'
import * as fields from '../../src/plugins/fields.js'
import * as labels from '../../src/netconf/labels.js'
import type {NetConfList} from '../../src/plugins/types.js'

// the scalars live in plugins/fields.ts, the request's own values in validate.ts
const v = {...validate, ...fields}

const HOSTILE = ['x\n--flush', 'x -j ACCEPT', 'x ! -s 10.91.0.7', 'x"', "x'", 'x#', 'x\0', 'x'.repeat(5000), 'tcp\u2028', 'ＡＤＭＩＮ']

function refusal(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(v.InvalidField)
    const msg = (err as Error).message
    expect(msg).not.toMatch(/[\n\r\0]/)
    return msg
  }
  throw new Error('was accepted')
}

const chain = (plugins: Array<Record<string, unknown>>): NetConfList => ({cniVersion: '1.0.0', name: 'n', plugins} as unknown as NetConfList)
const bridge = {type: 'bridge', bridge: 'br0', ipam: {type: 'host-local', ranges: [[{subnet: '10.1.0.0/24'}]]}}
// the request's values and every embedded plugin's entry, parsed as the runtime does before a chain
const req = (c: NetConfList, rt: Partial<Parameters<typeof v.request>[1]> = {}) => parseRequest('ADD', c, {containerId: 'c', ifName: 'eth0', ...rt}, true).rt.capabilityArgs

describe('validate: typed values', () => {
  it('parses protocols case-insensitively and nothing else', () => {
    expect(v.protocol('TCP', 'p')).toBe('tcp')
    expect(v.protocol('Sctp', 'p')).toBe('sctp')
    for (const bad of ['icmp', '', 6, ...HOSTILE.map((h) => `tcp${h}`)]) expect(refusal(() => v.protocol(bad, 'portMappings[0].protocol'))).toContain('portMappings[0].protocol')
  })
  it('ports are integers 1..65535; ranges are ordered', () => {
    expect(v.port(1, 'p')).toBe(1)
    for (const bad of [0, 65536, 80.5, '80', -1, NaN]) refusal(() => v.port(bad, 'p'))
    expect(v.portRangeText('80-90', 'p')).toEqual([80, 90])
    expect(refusal(() => v.portRangeText('90-80', 'p'))).toContain('not ordered')
  })
  it('writes addresses back in canonical form', () => {
    expect(v.ipAddress('2001:DB8:0:0::1', 'a')).toBe('2001:db8::1')
    expect(v.cidr('10.1.0.5/24', 'a')).toBe('10.1.0.5/24')
    expect(v.cidr('FD00:0::1/64', 'a')).toBe('fd00::1/64')
    for (const bad of ['10.0.0.1 ! -s 10.91.0.7', '10.0.0.1/33', '300.1.1.1', '1.2.3', '::1/129', '10.91.0.9/24\n-A INPUT -j ACCEPT', '１.２.３.４']) refusal(() => v.ipOrCidr(bad, 'ips[0]'))
  })
  it('MACs are 6 octets, rates non-negative integers', () => {
    expect(v.mac('AA-BB-CC-DD-EE-FF', 'mac')).toBe('aa:bb:cc:dd:ee:ff')
    for (const bad of ['aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff\n', 'aa:bb-cc:dd:ee:ff', 'aa:bb:cc:dd:ee:ff:00']) refusal(() => v.mac(bad, 'mac'))
    expect(v.nonNegativeInt(0, 'r')).toBe(0)
    for (const bad of [-1, 'fast', 1.5]) refusal(() => v.nonNegativeInt(bad, 'r'))
  })
  it('chain and interface names go through one validator each', () => {
    expect(v.chainName('CNI-ADMIN', 'c')).toBe('CNI-ADMIN')
    for (const bad of ['', '-j', 'A'.repeat(29), ...HOSTILE.map((h) => `ADMIN${h}`)]) refusal(() => v.chainName(bad, 'c'))
    for (const bad of ['', 'a'.repeat(16), '.', '..', 'a/b', 'a:b', '-x', ...HOSTILE]) refusal(() => v.ifName(bad, 'i'))
  })
  it('sysctl keys stay under net. with no "..", values have no stray whitespace', () => {
    expect(v.sysctlKey('net.ipv4.conf.eth0.rp_filter', 'k')).toBe('net.ipv4.conf.eth0.rp_filter')
    for (const bad of ['kernel.panic', 'net..ipv4', 'net.ipv4.conf.all.rp_filter\n', 'net', 'net.ipv4/../../kernel']) refusal(() => v.sysctlKey(bad, 'k'))
    expect(v.sysctlValue('net.ipv4.ip_local_port_range', '1024 65000', 'v')).toBe('1024 65000')
    for (const bad of ['1\n0', '1 0', ' 1', '1#']) refusal(() => v.sysctlValue('net.ipv4.ip_forward', bad, 'v'))
  })
})

describe('validate: the whole request', () => {
  it('names the capability arg that is refused', () => {
    const c = chain([bridge, {type: 'portmap', capabilities: {portMappings: true}}])
    const pm = (p: Record<string, unknown>) => req(c, {capabilityArgs: {portMappings: [{hostPort: 8080, containerPort: 80, protocol: 'tcp', ...p}]}})
    expect(refusal(() => pm({protocol: 'tcp\n--flush\n#'}))).toContain('portMappings[0].protocol')
    expect(refusal(() => pm({hostIP: '10.0.0.1 ! -s 10.91.0.7'}))).toContain('portMappings[0].hostIP')
    expect(refusal(() => pm({hostPort: 70000}))).toContain('portMappings[0].hostPort')
    expect(refusal(() => req(c, {capabilityArgs: {ips: ['10.91.0.9/24\n-A INPUT -j ACCEPT']}}))).toContain('ips[0]')
    expect(refusal(() => req(c, {capabilityArgs: {bandwidth: {ingressRate: 'fast'}}}))).toContain('bandwidth.ingressRate')
    expect(refusal(() => req(c, {capabilityArgs: {dns: {nameservers: ['1.1.1.1\n']}}}))).toContain('dns.nameservers[0]')
    expect(refusal(() => req(c, {capabilityArgs: {aliases: {n: ['web;rm']}}}))).toContain('aliases.n[0]')
    expect(refusal(() => req(c, {capabilityArgs: {mac: 'aa:bb:cc:dd:ee:ff\n'}}))).toContain('mac')
    const ok = pm({protocol: 'UDP', hostIP: '2001:DB8::1'}) as {portMappings: unknown[]}
    expect(ok.portMappings[0]).toEqual({hostPort: 8080, containerPort: 80, protocol: 'udp', hostIP: '2001:db8::1'})
  })
  it('names the CNI_ARGS key that is refused', () => {
    const c = chain([bridge])
    expect(refusal(() => req(c, {args: [['IP', '10.1.0.9\n-A INPUT']]}))).toContain('CNI_ARGS.IP')
    expect(refusal(() => req(c, {args: [['MAC', 'zz']]}))).toContain('CNI_ARGS.MAC')
    expect(refusal(() => req(c, {args: [['K8S_POD_NAME', 'a b']]}))).toContain('CNI_ARGS.K8S_POD_NAME')
    expect(refusal(() => req(c, {args: [['IgnoreUnknown', 'yes']]}))).toContain('CNI_ARGS.IgnoreUnknown')
    expect(() => req(c, {args: [['IgnoreUnknown', '1'], ['IP', '10.1.0.9'], ['K8S_POD_NAME', 'web-0']]})).not.toThrow()
  })
  it('names the conflist field of an embedded plugin that is refused', () => {
    expect(refusal(() => req(chain([bridge, {type: 'firewall', iptablesAdminChainName: 'ADMIN\n--flush'}])))).toContain('plugins[1].iptablesAdminChainName')
    expect(refusal(() => req(chain([bridge, {type: 'tuning', sysctl: {'net.ipv4.conf.IFNAME.rp_filter': '1\n0'}}])))).toContain('plugins[1].sysctl.net.ipv4.conf.IFNAME.rp_filter')
    expect(refusal(() => req(chain([{...bridge, bridge: 'cni0\n'}])))).toContain('plugins[0].bridge')
    expect(refusal(() => req(chain([{...bridge, mtu: '1500'}])))).toContain('plugins[0].mtu')
    expect(refusal(() => req(chain([{...bridge, ipam: {type: 'host-local', ranges: [[{subnet: '10.1.0.0/24'}]], routes: [{dst: '0.0.0.0/0 via 1.1.1.1'}]}}])))).toContain('plugins[0].ipam.routes[0].dst')
    expect(refusal(() => req(chain([{...bridge, ipam: {type: 'host-local', ranges: [[{subnet: '10.1.0.0/24'}]], dataDir: '/var/lib/../../etc'}}])))).toContain('plugins[0].ipam.dataDir')
    expect(refusal(() => req(chain([bridge, {type: 'portmap', externalSetMarkChain: 'X -j ACCEPT'}])))).toContain('plugins[1].externalSetMarkChain')
    expect(refusal(() => req(chain([bridge, {type: 'portmap', conditionsV4: ['-s 1.1.1.1']}])))).toContain('plugins[1].conditionsV4[0]')
  })
  it('leaves fields of exec\'d plugins to those plugins', () => {
    const c = chain([{type: 'macvlan', master: 'eth0 whatever'}])
    expect(() => parseRequest('ADD', c, {containerId: 'c', ifName: 'eth0'}, false)).not.toThrow()
  })
})

describe('validate: CLI flags and labels', () => {
  it('port specs name their source', () => {
    expect(v.portSpec('127.0.0.1:8080:80/UDP', '--publish')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'udp', hostIP: '127.0.0.1'})
    expect(v.portSpec('[::1]:8080:80', '--publish')).toEqual({hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '::1'})
    for (const bad of ['8080:80/tcp\n--flush', '8080:80/icmp', '1.2.3.4 ! -s 1.1.1.1:8080:80', '70000:80', '0:80', '80', ':80', '[1.2.3.4]:80:80']) {
      expect(refusal(() => v.portSpec(bad, '--publish'))).toContain('--publish')
    }
  })
  it('parses the ctrnet/networks and ctrnet/publish labels', () => {
    expect(labels.networksLabel('a,b').map((i) => i.network)).toEqual(['a', 'b'])
    expect(labels.networksLabel('[{"network":"a","publish":["8080:80"],"ip":"10.1.0.9","aliases":["api"]}]')[0]).toEqual({
      network: 'a',
      publish: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}],
      ip: '10.1.0.9',
      aliases: ['api'],
    })
    expect(refusal(() => labels.networksLabel('[{"network":"a","publish":["8080:80/tcp\\n--flush"]}]'))).toContain('label ctrnet/networks[0].publish[0]')
    expect(refusal(() => labels.networksLabel('[{"network":"a","ifname":"eth0 x"}]'))).toContain('label ctrnet/networks[0].ifname')
    expect(refusal(() => labels.publishLabel('8080:80,9090:90/icmp'))).toContain('label ctrnet/publish')
  })
})
