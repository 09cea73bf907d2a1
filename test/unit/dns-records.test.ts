import {describe, expect, it} from 'vitest'
import {buildZone, foldName, isZoneName, lookup, reverseName, zoneRecords} from '../../src/services/dns/records.js'
import {parseUpstream, upstreamsFromResolvConf} from '../../src/services/dns/upstream.js'

const members = [
  {names: ['web', '0123456789ab', 'api'], ipv4: ['10.4.1.2'], ipv6: ['fd00:4:1::2']},
  {names: ['Worker'], ipv4: ['10.4.1.3'], ipv6: []},
  {names: ['db'], ipv4: [], ipv6: ['FD00:4:1:0::4']},
]

describe('dns records: a zone per network', () => {
  const zone = buildZone('MyNet', members)

  it('answers each name and name.network, case-insensitively, with or without the final dot', () => {
    for (const q of ['web', 'WEB', 'web.mynet', 'Web.MyNet.', 'api', 'api.mynet', '0123456789AB.mynet']) {
      const r = lookup(zone, q, 'A')
      expect(r, q).toEqual({kind: 'answer', records: [{name: q, type: 'A', data: '10.4.1.2'}]})
    }
    expect(lookup(zone, 'worker', 'A')).toEqual({kind: 'answer', records: [{name: 'worker', type: 'A', data: '10.4.1.3'}]})
    expect(lookup(zone, 'WORKER.MYNET', 'A')).toMatchObject({kind: 'answer'})
    expect(lookup(zone, 'web', 'AAAA')).toEqual({kind: 'answer', records: [{name: 'web', type: 'AAAA', data: 'fd00:4:1::2'}]})
    expect(lookup(zone, 'web', 'ANY')).toEqual({
      kind: 'answer',
      records: [
        {name: 'web', type: 'A', data: '10.4.1.2'},
        {name: 'web', type: 'AAAA', data: 'fd00:4:1::2'},
      ],
    })
  })

  it('a name of the zone without a record of the type is NODATA; other names are forwarded', () => {
    expect(lookup(zone, 'worker', 'AAAA')).toEqual({kind: 'nodata'})
    expect(lookup(zone, 'db', 'A')).toEqual({kind: 'nodata'})
    expect(lookup(zone, 'web', 'MX')).toEqual({kind: 'nodata'})
    expect(lookup(zone, 'web', 'TXT')).toEqual({kind: 'nodata'})
    expect(lookup(zone, 'example.com', 'A')).toEqual({kind: 'forward'})
    expect(lookup(zone, 'web.othernet', 'A')).toEqual({kind: 'forward'})
    expect(lookup(zone, 'mynet', 'A')).toEqual({kind: 'forward'})
    expect(lookup(zone, 'we', 'A')).toEqual({kind: 'forward'})
  })

  it('PTR for the member addresses, IPv4 and IPv6, to the first name qualified with the network', () => {
    expect(reverseName('10.4.1.2')).toBe('2.1.4.10.in-addr.arpa')
    expect(reverseName('fd00:4:1::2')).toBe('2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.0.0.0.0.0.d.f.ip6.arpa')
    expect(lookup(zone, '2.1.4.10.in-addr.arpa', 'PTR')).toEqual({kind: 'answer', records: [{name: '2.1.4.10.in-addr.arpa', type: 'PTR', data: 'web.mynet'}]})
    expect(lookup(zone, '3.1.4.10.IN-ADDR.ARPA.', 'PTR')).toMatchObject({kind: 'answer', records: [{type: 'PTR', data: 'worker.mynet'}]})
    const v6 = reverseName('fd00:4:1::4')
    expect(lookup(zone, v6, 'PTR')).toEqual({kind: 'answer', records: [{name: v6, type: 'PTR', data: 'db.mynet'}]})
    expect(lookup(zone, '2.1.4.10.in-addr.arpa', 'A')).toEqual({kind: 'nodata'})
    expect(lookup(zone, '9.1.4.10.in-addr.arpa', 'PTR')).toEqual({kind: 'forward'})
  })

  it('a name on two members answers both addresses; names that are not DNS names are left out', () => {
    const z = buildZone('n', [
      {names: ['svc', 'bad name', 'ok_1'], ipv4: ['10.0.0.2'], ipv6: []},
      {names: ['SVC', '-x', 'a'.repeat(64)], ipv4: ['10.0.0.3'], ipv6: []},
    ])
    expect(lookup(z, 'svc.n', 'A')).toMatchObject({records: [{data: '10.0.0.2'}, {data: '10.0.0.3'}]})
    expect(lookup(z, 'ok_1', 'A')).toMatchObject({kind: 'answer'})
    expect(z.skipped).toEqual(['bad name', '-x', 'a'.repeat(64)])
    expect(lookup(z, 'bad name', 'A')).toEqual({kind: 'forward'})
  })

  it('lists the records served', () => {
    expect(zoneRecords(buildZone('n', [{names: ['b', 'a'], ipv4: ['10.0.0.2'], ipv6: ['fd00::2']}]))).toEqual([
      {name: 'a', type: 'A', data: '10.0.0.2'},
      {name: 'a', type: 'AAAA', data: 'fd00::2'},
      {name: 'a.n', type: 'A', data: '10.0.0.2'},
      {name: 'a.n', type: 'AAAA', data: 'fd00::2'},
      {name: 'b', type: 'A', data: '10.0.0.2'},
      {name: 'b', type: 'AAAA', data: 'fd00::2'},
      {name: 'b.n', type: 'A', data: '10.0.0.2'},
      {name: 'b.n', type: 'AAAA', data: 'fd00::2'},
      // sorted as text: the ip6.arpa name of fd00::2 starts 2.0.0.0.
      {name: reverseName('fd00::2'), type: 'PTR', data: 'b.n'},
      {name: '2.0.0.10.in-addr.arpa', type: 'PTR', data: 'b.n'},
    ])
  })

  it('refuses a member address of the wrong family', () => {
    expect(() => buildZone('n', [{names: ['x'], ipv4: ['fd00::1'], ipv6: []}])).toThrow('not IPv4')
    expect(() => buildZone('n', [{names: ['x'], ipv4: [], ipv6: ['10.0.0.1']}])).toThrow('not IPv6')
  })

  it('folds ASCII only, checks names', () => {
    expect(foldName('AbC.')).toBe('abc')
    expect(foldName('.')).toBe('.')
    expect(foldName('ÄB')).toBe('Äb')
    expect(isZoneName('a.b-c.d_e')).toBe(true)
    expect(isZoneName('a..b')).toBe(false)
    expect(isZoneName('a-')).toBe(false)
    expect(isZoneName('x'.repeat(254))).toBe(false)
  })
})

describe('dns upstreams', () => {
  it('reads nameservers from resolv.conf, at most 3, comments and junk ignored', () => {
    const text = [
      '# generated',
      'search example.com',
      'nameserver 10.0.0.2 ; main',
      'nameserver   fd00::53',
      'nameserver fe80::1%eth0',
      'nameserver not-an-ip',
      ';nameserver 10.9.9.9',
      'nameserver 10.0.0.2',
      'nameserver 10.0.0.3',
      'nameserver 10.0.0.4',
      'options ndots:2',
    ].join('\n')
    expect(upstreamsFromResolvConf(text)).toEqual(['10.0.0.2', 'fd00::53', '10.0.0.3'])
    expect(upstreamsFromResolvConf('')).toEqual([])
  })
  it('parses address and address#port', () => {
    expect(parseUpstream('10.0.0.2')).toEqual({address: '10.0.0.2', port: 53, v6: false})
    expect(parseUpstream('10.0.0.2#5353')).toEqual({address: '10.0.0.2', port: 5353, v6: false})
    expect(parseUpstream('FD00::2#5353')).toEqual({address: 'fd00::2', port: 5353, v6: true})
    expect(() => parseUpstream('10.0.0.2#0')).toThrow('port')
    expect(() => parseUpstream('10.0.0.2:53')).toThrow('not an IP address')
    expect(() => parseUpstream('[::1]:53')).toThrow('not an IP address')
  })
})
