import {describe, expect, it} from 'vitest'
import {canonicalIp, familyOf, familyOfCidr, ipRange, parseCidr, parseIp} from '../../src/kernel/ip/addr.js'
import {parseCidr as parseSubnet, parseIp as parseSubnetIp} from '../../src/netconf/subnet.js'

describe('kernel/ip/addr: one parser, two readings of ::ffff:a.b.c.d', () => {
  it('maps a dotted IPv4-mapped address to IPv4 by default, keeps it IPv6 with keepMapped', () => {
    expect(parseIp('::ffff:10.1.2.3')).toEqual({v6: false, ip: '10.1.2.3'})
    expect(parseIp('::ffff:10.1.2.3', {keepMapped: true})).toEqual({v6: true, ip: '::ffff:a01:203'})
    expect(parseCidr('::ffff:10.1.2.3/24')).toEqual({v6: false, ip: '10.1.2.3', prefix: 24})
    expect(() => parseCidr('::ffff:10.1.2.3/120')).toThrow('invalid CIDR')
    expect(parseCidr('::ffff:10.1.2.3/120', {keepMapped: true})).toEqual({v6: true, ip: '::ffff:a01:203', prefix: 120})
  })
  it('netconf (network create) keeps it IPv6, rejects zones, returns undefined', () => {
    expect(parseSubnet('::ffff:10.1.2.0/120')).toMatchObject({v6: true, family: 6, network: '::ffff:a01:200/120'})
    expect(parseSubnetIp('::ffff:10.1.2.3')).toEqual({family: 6, text: '::ffff:a01:203'})
    expect(parseSubnetIp('fe80::1%eth0')).toBeUndefined()
    expect(parseSubnet('fe80::1%eth0/64')).toBeUndefined()
    expect(parseSubnet('nope')).toBeUndefined()
    // three prefix digits: the kernel parser takes them, network create never did for IPv4
    expect(parseCidr('10.0.0.0/008')).toEqual({v6: false, ip: '10.0.0.0', prefix: 8})
    expect(parseSubnet('10.0.0.0/008')).toBeUndefined()
    expect(parseSubnet('fd00::/064')).toMatchObject({network: 'fd00::/64'})
  })
  it('ipRange, families', () => {
    expect(ipRange(parseCidr('10.4.1.7/24'))).toEqual({start: 0x0a040100n, end: 0x0a0401ffn})
    expect(familyOfCidr(parseCidr('fd00::1/64'))).toBe(6)
    expect(familyOf('10.0.0.0/8')).toBe(4)
    expect(familyOf('fd00::1')).toBe(6)
  })
  it('canonicalIp: iptables text, names unchanged, mapped stays IPv6', () => {
    expect(canonicalIp('FD00:0::0001')).toBe('fd00::1')
    expect(canonicalIp('10.0.0.1')).toBe('10.0.0.1')
    expect(canonicalIp('::ffff:10.1.2.3')).toBe('::ffff:a01:203')
    expect(canonicalIp('example.com')).toBe('example.com')
  })
})
