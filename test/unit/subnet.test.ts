import {describe, expect, it} from 'vitest'
import {
  confSubnets,
  firstIp,
  getFreeSubnet,
  hasHostBits,
  lastIp,
  networkText,
  overlaps,
  parseCidr,
  parseIp,
  type Cidr,
} from '../../src/netconf/subnet.js'
import {hostInterfaceSubnets, hostOnLinkRouteSubnets} from '../../src/kernel/ip/host-subnets.js'
import type {NetConfList} from '../../src/plugins/types.js'

const c = (s: string) => parseCidr(s)!
const nets = (xs: Cidr[]) => xs.map(networkText)

describe('parseCidr', () => {
  it('canonicalises and keeps what was typed', () => {
    expect(c('10.244.0.1/16')).toMatchObject({family: 4, network: '10.244.0.0/16', prefix: 16, address: '10.244.0.1'})
    expect(c('2001:DB8::1/64')).toMatchObject({family: 6, network: '2001:db8::/64', address: '2001:db8::1'})
    expect(hasHostBits(c('10.244.0.1/16'))).toBe(true)
    expect(hasHostBits(c('10.244.0.0/16'))).toBe(false)
    expect(hasHostBits(c('fd00::1/64'))).toBe(true)
  })
  it('rejects what Go net.ParseCIDR rejects', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/33', 'fd00::/129', '10.0.0/8', '010.0.0.0/8', 'x/8', '', '/8', 'fe80::1%eth0/64', '10.0.0.0/8/8', '10.0.0.0/-1']) {
      expect(parseCidr(bad), bad).toBeUndefined()
    }
  })
  it('parseIp', () => {
    expect(parseIp('10.1.2.3')).toMatchObject({family: 4, text: '10.1.2.3'})
    expect(parseIp('FD00::0001')).toMatchObject({family: 6, text: 'fd00::1'})
    expect(parseIp('10.1.2.3/24')).toBeUndefined()
    expect(parseIp('10.1.2')).toBeUndefined()
  })
  it('first/last ip as nerdctl computes them', () => {
    expect(firstIp(c('10.4.1.0/24'))).toBe('10.4.1.1')
    expect(lastIp(c('10.4.1.0/24'))).toBe('10.4.1.255')
    expect(firstIp(c('fd00::/64'))).toBe('fd00::1')
    expect(firstIp(c('10.1.1.1/32'))).toBe('10.1.1.1')
  })
})

describe('overlaps', () => {
  it('by containment either way, never across families', () => {
    expect(overlaps(c('10.4.0.0/16'), c('10.4.7.0/24'))).toBe(true)
    expect(overlaps(c('10.4.7.0/24'), c('10.4.0.0/16'))).toBe(true)
    expect(overlaps(c('10.4.7.0/24'), c('10.4.8.0/24'))).toBe(false)
    expect(overlaps(c('0.0.0.0/0'), c('::/0'))).toBe(false)
  })
})

describe('getFreeSubnet (nerdctl GetFreeSubnet from 10.4.1.0/24)', () => {
  const start = c('10.4.1.0/24')
  it('first candidate when nothing is used', () => {
    expect(getFreeSubnet(start, [])!.network).toBe('10.4.1.0/24')
  })
  it('steps the third octet, skipping anything overlapping', () => {
    const used = [c('10.4.1.0/24'), c('10.4.2.200/29'), c('10.4.3.0/25'), c('192.168.0.0/16')]
    expect(getFreeSubnet(start, used)!.network).toBe('10.4.4.0/24')
  })
  it('a big used network is skipped in one go, with carry into the second octet', () => {
    expect(getFreeSubnet(start, [c('10.4.0.0/16')])!.network).toBe('10.5.0.0/24')
    expect(getFreeSubnet(c('10.4.255.0/24'), [c('10.4.255.0/24')])!.network).toBe('10.5.0.0/24')
  })
  it('undefined when the address space is exhausted', () => {
    expect(getFreeSubnet(start, [c('0.0.0.0/0')])).toBeUndefined()
    expect(getFreeSubnet(c('255.255.255.0/24'), [c('255.255.255.0/24')])).toBeUndefined()
  })
})

describe('confSubnets: every visible network counts, whatever its type', () => {
  const conf = (plugins: unknown[]): NetConfList => ({cniVersion: '1.0.0', name: 'x', plugins: plugins as NetConfList['plugins']})
  it('bridge host-local ranges (every range of every set)', () => {
    const n = conf([{type: 'bridge', ipam: {type: 'host-local', ranges: [[{subnet: '10.1.0.0/16'}, {subnet: '10.2.0.0/16'}], [{subnet: 'fd00::/64'}]]}}])
    expect(nets(confSubnets(n))).toEqual(['10.1.0.0/16', '10.2.0.0/16', 'fd00::/64'])
  })
  it('macvlan, ipvlan, old-style subnet, static addresses, foreign plugin types', () => {
    expect(nets(confSubnets(conf([{type: 'macvlan', master: 'eth0', ipam: {type: 'host-local', subnet: '192.168.9.0/24'}}])))).toEqual([
      '192.168.9.0/24',
    ])
    expect(nets(confSubnets(conf([{type: 'ipvlan', ipam: {type: 'static', addresses: [{address: '10.10.10.5/24'}]}}])))).toEqual(['10.10.10.0/24'])
    expect(nets(confSubnets(conf([{type: 'ptp', ipam: {type: 'host-local', ranges: [[{subnet: '10.20.0.0/16'}]]}}, {type: 'portmap'}])))).toEqual([
      '10.20.0.0/16',
    ])
  })
  it('ignores junk', () => {
    expect(confSubnets(conf([{type: 'bridge', ipam: {ranges: 'nope', subnet: 'bad'}}, null, {type: 'x', ipam: {ranges: [[null, {subnet: 5}]]}}]))).toEqual([])
  })
})

describe('host subnets (no process spawned)', () => {
  it('interface networks include loopback', () => {
    expect(nets(hostInterfaceSubnets())).toContain('127.0.0.0/8')
  })
  it('on-link routes parse into CIDRs and never include a default route', () => {
    const routes = hostOnLinkRouteSubnets()
    for (const r of routes) expect(r.prefix).toBeGreaterThan(0)
  })
})
