// The DNS server on loopback addresses with a high port (no root): answers
// over UDP and TCP, per-network zones, forwarding to an upstream that is a
// second DnsServer, SERVFAIL when no upstream answers, listeners.
import {afterEach, describe, expect, it} from 'vitest'
import dnsPacket from 'dns-packet'
import {DnsServer} from '../../src/services/dns/server.js'
import {connect, freePort, query, silentUdp, sleep, startServer, tcpAsk, udpAsk, type Target} from './dns-lib.js'

const members = [
  {names: ['web', 'api'], ipv4: ['10.4.1.2'], ipv6: ['fd00:4:1::2']},
  {names: ['worker'], ipv4: ['10.4.1.3'], ipv6: []},
]

const cleanup: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c()
})

async function serve(opts: Partial<ConstructorParameters<typeof DnsServer>[0]> = {}, addresses = ['127.0.0.1', '::1'], network = 'mynet') {
  const {server, port} = await startServer({upstreams: [], ...opts}, network, addresses)
  cleanup.push(() => server.close())
  return {server, port, at: (address: string): Target => ({address, port})}
}

describe('dns server: answers from the zone', () => {
  it('answers A, AAAA, PTR over UDP and TCP on 127.0.0.1 and ::1, case-insensitively, with the id, AA and TTL 0', async () => {
    const {server, at} = await serve()
    server.setMembers('mynet', members)
    for (const address of ['127.0.0.1', '::1']) {
      const t = at(address)
      const q = query('WeB.MyNet', 'A')
      const r = await udpAsk(t, q)
      expect(r.id).toBe(q.id)
      expect(r.type).toBe('response')
      expect(r.rcode).toBe('NOERROR')
      expect(r.flag_aa).toBe(true)
      expect(r.flag_rd).toBe(true)
      expect(r.questions).toEqual([{name: 'WeB.MyNet', type: 'A', class: 'IN'}])
      expect(r.answers).toMatchObject([{name: 'WeB.MyNet', type: 'A', ttl: 0, class: 'IN', data: '10.4.1.2'}])

      const six = await udpAsk(t, query('api', 'AAAA'))
      expect(six.answers).toMatchObject([{type: 'AAAA', data: 'fd00:4:1::2', ttl: 0}])

      const ptr = await udpAsk(t, query('3.1.4.10.in-addr.arpa', 'PTR'))
      expect(ptr.answers).toMatchObject([{type: 'PTR', data: 'worker.mynet'}])

      const qs = [query('worker', 'A'), query('web.mynet', 'AAAA'), query('2.1.4.10.in-addr.arpa', 'PTR')]
      const overTcp = await tcpAsk(t, qs)
      expect(overTcp.map((a) => a.id)).toEqual(qs.map((q) => q.id))
      expect(overTcp.map((a) => a.answers?.[0] && 'data' in a.answers[0] && a.answers[0].data)).toEqual(['10.4.1.3', 'fd00:4:1::2', 'web.mynet'])
      expect(overTcp.every((a) => a.flag_aa && a.rcode === 'NOERROR')).toBe(true)
    }
    expect(server.stats()).toMatchObject({answered: 12, malformed: 0, forwarded: 0})
  })

  it('NODATA for a name of the zone without a record of the type; EDNS answered with EDNS', async () => {
    const {server, at} = await serve()
    server.setMembers('mynet', members)
    const r = await udpAsk(at('127.0.0.1'), query('worker', 'AAAA'))
    expect(r.rcode).toBe('NOERROR')
    expect(r.answers).toEqual([])
    expect(r.flag_aa).toBe(true)
    const mx = await udpAsk(at('127.0.0.1'), query('web', 'MX'))
    expect([mx.rcode, mx.answers]).toEqual(['NOERROR', []])
    const e = await udpAsk(
      at('127.0.0.1'),
      query('web', 'A', {additionals: [{type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: []}]}),
    )
    expect(e.answers).toMatchObject([{data: '10.4.1.2'}])
    expect(e.additionals).toMatchObject([{type: 'OPT', udpPayloadSize: 1232}])
    expect(server.stats()).toMatchObject({nodata: 2, answered: 1})
  })

  it('changes answers at once with setMembers', async () => {
    const {server, at} = await serve()
    const t = at('127.0.0.1')
    server.setMembers('mynet', members)
    expect((await udpAsk(t, query('worker'))).answers).toMatchObject([{data: '10.4.1.3'}])
    server.setMembers('mynet', [{names: ['worker'], ipv4: ['10.4.1.9'], ipv6: []}])
    expect((await udpAsk(t, query('worker'))).answers).toMatchObject([{data: '10.4.1.9'}])
    server.setMembers('mynet', [])
    // no upstream: not in the zone any more, so forwarded, so SERVFAIL
    expect((await udpAsk(t, query('worker'))).rcode).toBe('SERVFAIL')
  })

  it('a UDP answer too large for 512 bytes comes empty with TC, and whole over TCP', async () => {
    const {server, at} = await serve()
    const many = Array.from({length: 60}, (_, i) => ({names: ['svc'], ipv4: [`10.4.2.${i + 1}`], ipv6: []}))
    server.setMembers('mynet', many)
    const r = await udpAsk(at('127.0.0.1'), query('svc'))
    expect(r.flag_tc).toBe(true)
    expect(r.answers).toEqual([])
    const [t] = await tcpAsk(at('127.0.0.1'), [query('svc')])
    expect(t.flag_tc).toBe(false)
    expect(t.answers).toHaveLength(60)
    expect(server.stats().truncated).toBe(1)
  })

  it('FORMERR for no question, NOTIMP for another opcode; two questions and responses are dropped', async () => {
    const {server, at} = await serve()
    const t = at('127.0.0.1')
    const none = await udpAsk(t, {type: 'query', id: 7, flags: 0, questions: []})
    expect([none.id, none.rcode]).toEqual([7, 'FORMERR'])
    // the header guard drops a query of more than one question before decoding it
    await expect(udpAsk(t, {type: 'query', id: 8, questions: [{type: 'A', name: 'web'}, {type: 'A', name: 'api'}]}, 300)).rejects.toThrow('no UDP answer')
    // opcode 2 (STATUS) in the flags' OPCODE field
    const status = await udpAsk(t, {type: 'query', id: 9, flags: 2 << 11, questions: [{type: 'A', name: 'web'}]})
    expect(status.rcode).toBe('NOTIMP')
    expect(status.opcode).toBe('STATUS')
    await expect(udpAsk(t, {type: 'response', id: 10, questions: [{type: 'A', name: 'web'}]}, 300)).rejects.toThrow('no UDP answer')
    expect(server.stats()).toMatchObject({formerr: 1, notimp: 1, malformed: 2})
  })

  it('half-closed TCP clients get every answer, then the connection closes', async () => {
    const {server, at} = await serve()
    server.setMembers('mynet', members)
    const qs = Array.from({length: 40}, (_, i) => query(i % 2 ? 'web' : 'worker'))
    const answers = await tcpAsk(at('::1'), qs, {halfClose: true})
    expect(answers.map((a) => a.id)).toEqual(qs.map((q) => q.id))
  })
})

describe('dns server: zones per network', () => {
  it('answers a query from the zone of the network whose listener got it; other names go upstream', async () => {
    // the upstream: a second DnsServer that holds every name, on its own address
    const up = await serve({}, ['127.0.0.3'], 'up')
    up.server.setMembers('up', [
      {names: ['outside.example'], ipv4: ['192.0.2.7'], ipv6: []},
      {names: ['worker'], ipv4: ['192.0.2.8'], ipv6: []},
    ])
    const {server, port} = await serve({upstreams: [`127.0.0.3#${up.port}`]}, ['127.0.0.1'], 'neta')
    expect(await server.listen('netb', ['127.0.0.2'])).toEqual([])
    server.setMembers('neta', [{names: ['web'], ipv4: ['10.4.1.2'], ipv6: []}])
    server.setMembers('netb', [{names: ['worker'], ipv4: ['10.5.1.3'], ipv6: []}])
    const a = {address: '127.0.0.1', port}
    const b = {address: '127.0.0.2', port}
    expect((await udpAsk(a, query('web'))).answers).toMatchObject([{data: '10.4.1.2'}])
    expect((await udpAsk(b, query('worker.netb'))).answers).toMatchObject([{data: '10.5.1.3'}])
    // worker is on netb only: on neta it is an unknown name, forwarded (the upstream knows another worker)
    const fwd = await udpAsk(a, query('worker'))
    expect(fwd.answers).toMatchObject([{data: '192.0.2.8'}])
    expect(fwd.flag_aa).toBe(true) // the upstream's answer, relayed as it came
    // worker.netb: not in neta's zone either; the upstream has no such name and forwards nowhere
    expect((await udpAsk(a, query('worker.netb'))).rcode).toBe('SERVFAIL')
    expect(server.stats()).toMatchObject({answered: 2, forwarded: 2, forwardAnswered: 2})
  })

  it('listen is idempotent, reports addresses it cannot bind without throwing, and removes what is no longer wanted', async () => {
    const {server, port} = await serve({}, ['127.0.0.1'], 'n1')
    expect(await server.listen('n1', ['127.0.0.1'])).toEqual([])
    // 192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL, as a bridge without its address yet
    const failed = await server.listen('n1', ['127.0.0.1', '192.0.2.1', 'nope'])
    expect(failed).toEqual([
      {address: 'nope', reason: 'not an IP address'},
      {address: '192.0.2.1', reason: expect.stringContaining('EADDRNOTAVAIL'), code: 'EADDRNOTAVAIL'},
    ])
    expect(server.listening('n1')).toEqual(['127.0.0.1'])
    expect(await server.listen('n1', ['127.0.0.4'])).toEqual([])
    expect(server.listening('n1')).toEqual(['127.0.0.4'])
    await expect(udpAsk({address: '127.0.0.1', port}, query('x'), 300)).rejects.toThrow()
    server.setMembers('n1', [{names: ['x'], ipv4: ['10.0.0.9'], ipv6: []}])
    expect((await udpAsk({address: '127.0.0.4', port}, query('x'))).answers).toMatchObject([{data: '10.0.0.9'}])
    // the port is taken by another server on that address: reported, not thrown
    const other = new DnsServer({port, upstreams: []})
    cleanup.push(() => other.close())
    expect(await other.listen('n2', ['127.0.0.4'])).toMatchObject([{address: '127.0.0.4', code: 'EADDRINUSE'}])
    await server.removeNetwork('n1')
    expect(server.stats()).toMatchObject({listeners: 0, networks: 0})
    await expect(udpAsk({address: '127.0.0.4', port}, query('x'), 300)).rejects.toThrow()
    // and the address is free again
    expect(await other.listen('n2', ['127.0.0.4'])).toEqual([])
  })

  it('close() during a listen leaves nothing bound', async () => {
    const port = await freePort(['127.0.0.1', '127.0.0.5'])
    const server = new DnsServer({port, upstreams: []})
    const pending = server.listen('n', ['127.0.0.1', '127.0.0.5'])
    await server.close()
    expect((await pending).map((f) => f.reason)).toEqual(['DNS server closed', 'DNS server closed'])
    expect(server.stats()).toMatchObject({listeners: 0})
    const again = new DnsServer({port, upstreams: []})
    cleanup.push(() => again.close())
    expect(await again.listen('n', ['127.0.0.1', '127.0.0.5'])).toEqual([])
  })

  it('concurrent listen calls for one network end in the last one', async () => {
    const {server} = await serve({}, ['127.0.0.1'], 'n')
    const calls = [['127.0.0.5'], ['127.0.0.6', '127.0.0.7'], ['127.0.0.1'], ['127.0.0.6']].map((a) => server.listen('n', a))
    expect(await Promise.all(calls)).toEqual([[], [], [], []])
    expect(server.listening('n')).toEqual(['127.0.0.6'])
  })
})

describe('dns server: forwarding', () => {
  async function upstream() {
    const up = await serve({}, ['127.0.0.3', '::1'], 'up')
    up.server.setMembers('up', [{names: ['outside.example'], ipv4: ['192.0.2.7'], ipv6: ['2001:db8::7']}])
    return up
  }

  it('forwards unknown names over UDP to UDP and TCP to TCP, keeping the id, to IPv4 and IPv6 upstreams', async () => {
    const up = await upstream()
    for (const u of [`127.0.0.3#${up.port}`, `::1#${up.port}`]) {
      const {server, at} = await serve({upstreams: [u]}, ['127.0.0.1'])
      const q = query('Outside.Example', 'A')
      const r = await udpAsk(at('127.0.0.1'), q)
      expect(r.id).toBe(q.id)
      expect(r.answers).toMatchObject([{name: 'Outside.Example', data: '192.0.2.7'}])
      const qs = [query('outside.example', 'AAAA'), query('outside.example', 'A')]
      const viaTcp = await tcpAsk(at('127.0.0.1'), qs)
      expect(viaTcp.map((a) => a.id).sort()).toEqual(qs.map((x) => x.id).sort())
      expect(viaTcp.flatMap((a) => a.answers?.map((x) => 'data' in x && x.data)).sort()).toEqual(['192.0.2.7', '2001:db8::7'])
      expect(server.stats()).toMatchObject({forwarded: 3, forwardAnswered: 3, servfail: 0})
    }
    // UDP queries arrived at the upstream over UDP, TCP ones over TCP
    expect(up.server.stats()).toMatchObject({answered: 6, tcpAccepted: 4})
  })

  it('SERVFAIL when the only upstream refuses (at once) or never answers (at the timeout)', async () => {
    const closedPort = await freePort(['127.0.0.1'])
    const refused = await serve({upstreams: [`127.0.0.1#${closedPort}`], upstreamTimeoutMs: 1500}, ['127.0.0.1'])
    let t0 = Date.now()
    expect((await udpAsk(refused.at('127.0.0.1'), query('a.example'))).rcode).toBe('SERVFAIL')
    expect(Date.now() - t0).toBeLessThan(1500)
    t0 = Date.now()
    expect((await tcpAsk(refused.at('127.0.0.1'), [query('a.example')]))[0].rcode).toBe('SERVFAIL')
    expect(Date.now() - t0).toBeLessThan(1500)

    const hole = await silentUdp('127.0.0.1')
    cleanup.push(hole.close)
    const silent = await serve({upstreams: [`127.0.0.1#${hole.port}`], upstreamTimeoutMs: 400}, ['127.0.0.1'])
    t0 = Date.now()
    const r = await udpAsk(silent.at('127.0.0.1'), query('b.example'))
    const took = Date.now() - t0
    expect(r.rcode).toBe('SERVFAIL')
    expect(took).toBeGreaterThanOrEqual(380)
    expect(took).toBeLessThan(3000)
    expect(hole.got()).toBe(1)
    expect(silent.server.stats()).toMatchObject({forwarded: 1, servfail: 1, forwardsInFlight: 0})
  })

  it('tries the next upstream when one refuses or stays silent', async () => {
    const up = await upstream()
    const hole = await silentUdp('127.0.0.1')
    cleanup.push(hole.close)
    const closedPort = await freePort(['127.0.0.1'])
    const {at} = await serve({upstreams: [`127.0.0.1#${hole.port}`, `127.0.0.1#${closedPort}`, `127.0.0.3#${up.port}`], upstreamTimeoutMs: 1500}, ['127.0.0.1'])
    const r = await udpAsk(at('127.0.0.1'), query('outside.example'))
    expect(r.answers).toMatchObject([{data: '192.0.2.7'}])
    expect(hole.got()).toBe(1)
  })

  it('ignores an upstream answer whose id or question does not match', async () => {
    // an upstream that first answers with a wrong id, then a wrong name, then right
    const dgram = await import('node:dgram')
    const s = dgram.createSocket('udp4')
    s.on('message', (m, rinfo) => {
      const q = dnsPacket.decode(m)
      const reply = (id: number, name: string) =>
        s.send(dnsPacket.encode({type: 'response', id, questions: [{type: 'A', name}], answers: [{type: 'A', name, ttl: 5, data: name === 'real.example' ? '192.0.2.1' : '192.0.2.66'}]}), rinfo.port, rinfo.address)
      reply((q.id! + 1) % 65536, 'real.example')
      reply(q.id!, 'fake.example')
      setTimeout(() => reply(q.id!, 'real.example'), 20)
    })
    await new Promise<void>((r) => s.bind({address: '127.0.0.1', port: 0}, () => r()))
    cleanup.push(() => new Promise<void>((r) => s.close(() => r())))
    const {at} = await serve({upstreams: [`127.0.0.1#${s.address().port}`]}, ['127.0.0.1'])
    const r = await udpAsk(at('127.0.0.1'), query('real.example'))
    expect(r.answers).toMatchObject([{data: '192.0.2.1'}])
  })

  it('never forwards to one of its own listeners (a resolv.conf naming a gateway would loop)', async () => {
    const port = await freePort(['127.0.0.1'])
    const server = new DnsServer({port, upstreams: [`127.0.0.1#${port}`]})
    cleanup.push(() => server.close())
    expect(await server.listen('n', ['127.0.0.1'])).toEqual([])
    const r = await udpAsk({address: '127.0.0.1', port}, query('loop.example'))
    expect(r.rcode).toBe('SERVFAIL')
    expect(server.stats()).toMatchObject({received: 1, forwarded: 0, servfail: 1})
  })

  it('answers SERVFAIL at once beyond maxForwards in flight', async () => {
    const hole = await silentUdp('127.0.0.1')
    cleanup.push(hole.close)
    const {server, at} = await serve({upstreams: [`127.0.0.1#${hole.port}`], upstreamTimeoutMs: 800, maxForwards: 2}, ['127.0.0.1'])
    const answers = await Promise.all(Array.from({length: 5}, (_, i) => udpAsk(at('127.0.0.1'), query(`x${i}.example`))))
    expect(answers.map((a) => a.rcode)).toEqual(Array(5).fill('SERVFAIL'))
    expect(server.stats()).toMatchObject({forwarded: 2, forwardOverload: 3, servfail: 5})
    expect(hole.got()).toBe(2)
  })

  it('close() abandons forwards in flight and closes TCP clients', async () => {
    const hole = await silentUdp('127.0.0.1')
    cleanup.push(hole.close)
    const {server, at} = await serve({upstreams: [`127.0.0.1#${hole.port}`], upstreamTimeoutMs: 5000}, ['127.0.0.1'])
    const pending = udpAsk(at('127.0.0.1'), query('slow.example'), 1000).catch((e: Error) => e.message)
    const sock = await connect(at('127.0.0.1'))
    await sleep(100)
    expect(server.stats()).toMatchObject({forwardsInFlight: 1, tcpOpen: 1})
    await server.close()
    expect(server.stats()).toMatchObject({forwardsInFlight: 0, tcpOpen: 0, listeners: 0})
    expect(await pending).toContain('no UDP answer')
    expect(sock.destroyed || sock.readableEnded).toBe(true)
  })
})
