import dgram from 'node:dgram'
import net from 'node:net'
import dnsPacket, {type DecodedPacket} from 'dns-packet'
import {parseIp} from '../../kernel/ip/addr.js'
import {type DnsMember, type Zone, type ZoneRecord, buildZone, emptyZone, foldName, lookup, zoneRecords} from './records.js'
import {type Counters, newCounters} from './stats.js'
import {serveTcpClient} from './tcp.js'
import {MAX_UPSTREAMS, type Upstream, parseUpstream, tcpAttempt, udpAttempt} from './upstream.js'
import {FORMERR, NOERROR, NOTIMP, type Proto, type Query, type Reply, SERVFAIL, plausible, responseTo, toAnswer, udpLimit} from './wire.js'
import type {Logger} from '../../sys/log.js'

/**
 * The embedded DNS server of `ctrnet daemon`: UDP and TCP listeners per
 * network (on its gateway addresses), each answering from the zone of its own
 * network (records.ts), everything else forwarded to the host's resolvers.
 *
 * - Wire format: dns-packet only (decode/encode for UDP, streamDecode/
 *   streamEncode for TCP). The one thing read by hand is the 2-byte TCP length
 *   prefix, to find where a message ends and to refuse an oversized one before
 *   buffering it (tcpFrameLength).
 * - Which zone: the one of the network whose listener received the query. A
 *   name attached only on another network is not in this zone, so it is
 *   forwarded like any unknown name (aardvark-dns forwards every name outside
 *   its own records and search domain; Docker forwards too). `web.othernet`
 *   is therefore forwarded as well: ctrnet does not claim a DNS suffix, and a
 *   network called like a real domain (`lan`, `corp`) must not hide it.
 * - Forwarding: the query's own bytes (so the client's id and EDNS options)
 *   go to the upstreams in order, UDP for UDP and TCP for TCP; the next
 *   upstream is tried when one fails (ICMP refusal, reset) or has not
 *   answered within timeout/n; the first answer whose id and question match
 *   is relayed as it came; when none answers within upstreamTimeoutMs (or all
 *   failed) the client gets SERVFAIL. Every decodable query gets an answer.
 * - Bad input: a datagram or TCP message that does not decode, or that is a
 *   response, is dropped and counted (`malformed`); on TCP the connection is
 *   closed too. TCP connections are capped in number (`tcpRejected`), in
 *   message size (`tcpOversized`, checked on the length prefix), in idle time
 *   (no complete message for tcpIdleMs while nothing is pending: a client
 *   trickling bytes is closed as well, `tcpIdleClosed`), in pipelined
 *   queries and in unread output (`tcpWriteOverflow`); each connection is
 *   served on its own, so a stuck one never delays another (aardvark-dns
 *   CVE-2024-8418: one idle TCP client blocked every query).
 *
 * This file holds the listeners, the answering and the forward race; the
 * wire format is wire.ts, a TCP client tcp.ts, the upstreams and one attempt
 * at one upstream.ts, the counters stats.ts, the zone records.ts. The server
 * knows no use case: the daemon (app/daemon/dns.ts) feeds it each network's
 * members and listener addresses.
 */


export interface DnsServerOptions {
  /** default 53 (tests use another) */
  port?: number
  /**
   * resolver addresses: an IPv4 or IPv6 address, with an optional port as
   * `address#port` (dig's and dnsmasq's notation, the same for both
   * families: `10.0.0.2#5353`, `fd00::2#5353`); at most 3 are used, as glibc
   */
  upstreams: string[]
  /** default 2000: then SERVFAIL; never hang a client */
  upstreamTimeoutMs?: number
  /** default 3000 (aardvark-dns's value): a TCP connection with no complete message for this long is closed */
  tcpIdleMs?: number
  /** default 64 TCP connections over all listeners; more are closed at once */
  maxTcpConnections?: number
  /** default 4096: a TCP message announcing more is refused (connection closed); a larger UDP query is dropped as malformed */
  maxTcpMessageBytes?: number
  /** default 256 forwarded queries in flight (each holds a socket, so a file descriptor); beyond that, SERVFAIL at once */
  maxForwards?: number
  log?: Logger
}

/** A listener address that could not be bound, and why. */
export interface ListenFailure {
  address: string
  reason: string
  /** the errno code (EADDRNOTAVAIL while the bridge has no such address yet, EADDRINUSE, ...) */
  code?: string
}

function errCode(err: unknown): string | undefined {
  const c = (err as {code?: unknown})?.code
  return typeof c === 'string' ? c : undefined
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

interface Listener {
  network: string
  address: string
  udp: dgram.Socket
  tcp: net.Server
  /** open TCP clients -> their cleanup (runs once, on close or when the listener closes) */
  conns: Map<net.Socket, () => void>
  closed: boolean
}

export class DnsServer {
  private readonly port: number
  private readonly upstreams: Upstream[]
  private readonly timeoutMs: number
  private readonly tcpIdleMs: number
  private readonly maxTcpConnections: number
  private readonly maxTcpMessageBytes: number
  private readonly maxForwards: number
  private readonly log?: Logger
  private readonly zones = new Map<string, Zone>()
  private readonly listeners = new Map<string, Map<string, Listener>>()
  private readonly ops = new Map<string, Promise<unknown>>()
  /** cancels of the forwards in flight */
  private readonly forwards = new Set<() => void>()
  private tcpOpen = 0
  private readonly errorLog = new Map<string, {at: number; count: number}>()
  private closed = false
  private readonly counters: Counters

  constructor(opts: DnsServerOptions) {
    this.port = opts.port ?? 53
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535) throw new Error(`invalid DNS port ${opts.port}`)
    this.upstreams = opts.upstreams.slice(0, MAX_UPSTREAMS).map(parseUpstream)
    this.timeoutMs = opts.upstreamTimeoutMs ?? 2000
    this.tcpIdleMs = opts.tcpIdleMs ?? 3000
    this.maxTcpConnections = opts.maxTcpConnections ?? 64
    this.maxTcpMessageBytes = Math.min(opts.maxTcpMessageBytes ?? 4096, 65535)
    this.maxForwards = opts.maxForwards ?? 256
    this.log = opts.log
    this.counters = newCounters()
  }

  /** Replaces the members of a network's zone; the next query sees them. */
  setMembers(network: string, members: DnsMember[]): void {
    const zone = buildZone(network, members)
    if (zone.skipped.length > 0) this.log?.warn({network, names: zone.skipped}, 'dns: names that are not DNS names are not served')
    this.zones.set(network, zone)
  }

  /** The records served for a network (empty when it has no members). */
  records(network: string): ZoneRecord[] {
    return zoneRecords(this.zones.get(network) ?? emptyZone(network))
  }

  /**
   * Makes this network's listeners (UDP + TCP on each address, at the
   * server's port) exactly these. Idempotent. Returns the addresses that
   * could not be bound, with the reason; never throws for those.
   */
  listen(network: string, addresses: string[]): Promise<ListenFailure[]> {
    return this.serial(network, async () => {
      if (this.closed) return addresses.map((address) => ({address, reason: 'DNS server closed'}))
      const failures: ListenFailure[] = []
      const want = new Map<string, string>()
      for (const a of addresses) {
        try {
          want.set(parseIp(a, {keepMapped: true}).ip, a)
        } catch {
          failures.push({address: a, reason: 'not an IP address'})
        }
      }
      let mine = this.listeners.get(network)
      if (!mine) this.listeners.set(network, (mine = new Map()))
      for (const [ip, l] of [...mine]) {
        if (want.has(ip)) continue
        mine.delete(ip)
        await this.closeListener(l)
      }
      for (const [ip, given] of want) {
        if (mine.has(ip)) continue
        try {
          const l = await this.bind(network, ip)
          if (this.closed) {
            // close() ran while this one was binding
            await this.closeListener(l)
            failures.push({address: given, reason: 'DNS server closed'})
            continue
          }
          mine.set(ip, l)
          this.log?.info({network, address: ip, port: this.port}, 'dns: listening')
        } catch (err) {
          const f: ListenFailure = {address: given, reason: errMessage(err)}
          const code = errCode(err)
          if (code) f.code = code
          failures.push(f)
        }
      }
      if (mine.size === 0) this.listeners.delete(network)
      return failures
    })
  }

  /** Closes the network's listeners and forgets its zone. */
  removeNetwork(network: string): Promise<void> {
    return this.serial(network, async () => {
      this.zones.delete(network)
      const mine = this.listeners.get(network)
      this.listeners.delete(network)
      for (const l of mine?.values() ?? []) await this.closeListener(l)
    })
  }

  /** Counters since start, plus gauges: tcpOpen, forwardsInFlight, listeners, networks. */
  stats(): Record<string, number> {
    let listeners = 0
    for (const m of this.listeners.values()) listeners += m.size
    return {...this.counters, tcpOpen: this.tcpOpen, forwardsInFlight: this.forwards.size, listeners, networks: this.zones.size}
  }

  /** The addresses a network listens on now. */
  listening(network: string): string[] {
    return [...(this.listeners.get(network)?.keys() ?? [])]
  }

  /** Closes every listener and connection; forwards in flight are abandoned. */
  async close(): Promise<void> {
    this.closed = true
    for (const cancel of [...this.forwards]) cancel()
    const all = [...this.listeners.values()].flatMap((m) => [...m.values()])
    this.listeners.clear()
    this.zones.clear()
    await Promise.all(all.map((l) => this.closeListener(l)))
  }

  // ---- listeners -----------------------------------------------------------

  /** Socket errors can come once per packet: one line per message per 10 s, with the count since the last. */
  private logError(o: object, msg: string): void {
    const now = Date.now()
    const last = this.errorLog.get(msg) ?? {at: 0, count: 0}
    last.count++
    if (now - last.at >= 10_000) {
      this.log?.error({...o, count: last.count}, msg)
      last.at = now
      last.count = 0
    }
    this.errorLog.set(msg, last)
  }

  private serial<T>(network: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.ops.get(network) ?? Promise.resolve()
    const p = prev.then(fn, fn)
    const tail = p.catch(() => undefined)
    this.ops.set(network, tail)
    void tail.then(() => {
      if (this.ops.get(network) === tail) this.ops.delete(network)
    })
    return p
  }

  private async bind(network: string, ip: string): Promise<Listener> {
    const v6 = parseIp(ip, {keepMapped: true}).v6
    const udp = dgram.createSocket(v6 ? {type: 'udp6', ipv6Only: true} : {type: 'udp4'})
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind({address: ip, port: this.port, exclusive: true}, () => {
        udp.off('error', reject)
        resolve()
      })
    })
    const l: Listener = {network, address: ip, udp, tcp: net.createServer({allowHalfOpen: true}), conns: new Map(), closed: false}
    udp.on('error', (err) => this.logError({network, address: ip, err: errMessage(err)}, 'dns: UDP socket error'))
    udp.on('message', (msg, rinfo) => {
      this.handle(network, msg, 'udp', (resp) => {
        if (resp === undefined || l.closed) return
        l.udp.send(resp, rinfo.port, rinfo.address)
      })
    })
    try {
      await new Promise<void>((resolve, reject) => {
        l.tcp.once('error', reject)
        l.tcp.listen({host: ip, port: this.port, ipv6Only: v6, exclusive: true}, () => {
          l.tcp.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      l.closed = true
      udp.close()
      throw err
    }
    l.tcp.on('error', (err) => this.logError({network, address: ip, err: errMessage(err)}, 'dns: TCP listener error'))
    l.tcp.on('connection', (sock) => this.onConnection(l, sock))
    return l
  }

  private async closeListener(l: Listener): Promise<void> {
    if (l.closed) return
    l.closed = true
    for (const [s, gone] of [...l.conns]) {
      s.destroy()
      gone()
    }
    await Promise.all([new Promise<void>((r) => l.udp.close(() => r())), new Promise<void>((r) => l.tcp.close(() => r()))])
    this.log?.info({network: l.network, address: l.address}, 'dns: stopped listening')
  }

  // ---- TCP clients ---------------------------------------------------------

  private onConnection(l: Listener, sock: net.Socket): void {
    sock.on('error', () => undefined)
    if (l.closed || this.tcpOpen >= this.maxTcpConnections) {
      this.counters.tcpRejected++
      sock.destroy()
      return
    }
    this.tcpOpen++
    this.counters.tcpAccepted++
    const release = serveTcpClient(sock, {
      idleMs: this.tcpIdleMs,
      maxMessageBytes: this.maxTcpMessageBytes,
      counters: this.counters,
      handle: (frame, reply) => this.handle(l.network, frame, 'tcp', reply),
    })
    const gone = () => {
      if (!l.conns.delete(sock)) return
      release()
      this.tcpOpen--
    }
    l.conns.set(sock, gone)
    sock.on('close', gone)
  }

  // ---- queries -------------------------------------------------------------

  /**
   * One message from a client (UDP: the datagram; TCP: the framed message).
   * Returns false when it was dropped as malformed (reply is then never
   * called); otherwise reply is called once, now or when the forward ends.
   */
  private handle(network: string, wire: Buffer, proto: Proto, reply: Reply): boolean {
    this.counters.received++
    if (wire.length > this.maxTcpMessageBytes + 2 || !plausible(proto === 'tcp' ? wire.subarray(2) : wire, true)) {
      this.counters.malformed++
      return false
    }
    let q: Query
    try {
      q = (proto === 'tcp' ? dnsPacket.streamDecode(wire) : dnsPacket.decode(wire)) as Query
    } catch {
      this.counters.malformed++
      return false
    }
    if (!q || q.type !== 'query' || !Array.isArray(q.questions) || q.questions.some((x) => x.name.includes('\uFFFD'))) {
      this.counters.malformed++
      return false
    }
    this.counters.queries++
    const encode = proto === 'tcp' ? dnsPacket.streamEncode : dnsPacket.encode
    let out: Buffer
    try {
      if (q.opcode !== 'QUERY') {
        this.counters.notimp++
        out = encode(responseTo(q, NOTIMP, []))
      } else if (q.questions.length !== 1) {
        this.counters.formerr++
        out = encode(responseTo(q, FORMERR, []))
      } else {
        const question = q.questions[0]
        const zone = this.zones.get(network)
        const inClass = question.class === undefined || question.class === 'IN' || question.class === 'ANY'
        const res = zone && inClass ? lookup(zone, question.name, question.type) : ({kind: 'forward'} as const)
        if (res.kind === 'forward') {
          this.forward(q, proto, wire, reply)
          return true
        }
        const answers = res.kind === 'answer' ? res.records.map(toAnswer) : []
        out = encode(responseTo(q, NOERROR, answers, {aa: true}))
        if (proto === 'udp' && out.length > udpLimit(q)) {
          this.counters.truncated++
          out = encode(responseTo(q, NOERROR, [], {aa: true, tc: true}))
        }
        this.counters[res.kind === 'answer' ? 'answered' : 'nodata']++
      }
    } catch {
      // a question dns-packet decoded but cannot encode back
      this.counters.malformed++
      return false
    }
    reply(out)
    return true
  }

  private servfail(q: Query, proto: Proto): Buffer {
    this.counters.servfail++
    return (proto === 'tcp' ? dnsPacket.streamEncode : dnsPacket.encode)(responseTo(q, SERVFAIL, []))
  }

  /** Whether an upstream's message answers q (id and question); undefined when not, else its decoded form. */
  private matches(q: Query, resp: Buffer, proto: Proto): DecodedPacket | undefined {
    let r: DecodedPacket
    try {
      if (!plausible(proto === 'tcp' ? resp.subarray(2) : resp, false)) return undefined
      r = (proto === 'tcp' ? dnsPacket.streamDecode(resp) : dnsPacket.decode(resp)) as DecodedPacket
    } catch {
      return undefined
    }
    if (!r || r.type !== 'response' || r.id !== q.id) return undefined
    const want = q.questions![0]
    const got = r.questions?.[0]
    if (r.questions?.length !== 1 || !got || got.type !== want.type || foldName(got.name) !== foldName(want.name)) return undefined
    return r
  }

  /** Whether an upstream is one of our own listeners (a resolv.conf naming a gateway): asking it would loop. */
  private isOwn(up: Upstream): boolean {
    if (up.port !== this.port) return false
    for (const m of this.listeners.values()) if (m.has(up.address)) return true
    return false
  }

  private forward(q: Query, proto: Proto, wire: Buffer, reply: Reply): void {
    const ups = this.upstreams.filter((u) => !this.isOwn(u))
    if (ups.length === 0 || this.closed) return reply(this.servfail(q, proto))
    if (this.forwards.size >= this.maxForwards) {
      this.counters.forwardOverload++
      return reply(this.servfail(q, proto))
    }
    this.counters.forwarded++
    const attempts: Array<() => void> = []
    const step = Math.max(1, Math.floor(this.timeoutMs / ups.length))
    let launched = 0
    let failed = 0
    let settled = false
    let stepTimer: NodeJS.Timeout | undefined
    const finish = (resp: Buffer | undefined, cancelled = false) => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      clearTimeout(stepTimer)
      for (const end of attempts) end()
      this.forwards.delete(cancel)
      if (cancelled) reply(undefined)
      else if (resp) reply(resp)
      else reply(this.servfail(q, proto))
    }
    const cancel = () => finish(undefined, true)
    const accept = (resp: Buffer): boolean => {
      if (settled) return true
      const r = this.matches(q, resp, proto)
      if (!r) return false
      this.counters.forwardAnswered++
      if ((r as {rcode?: string}).rcode === 'NXDOMAIN') this.counters.nxdomain++
      finish(resp)
      return true
    }
    // an attempt that fails hands over at once if it was the latest one
    const failOne = (i: number) => {
      failed++
      if (failed >= ups.length) finish(undefined)
      else if (i === launched - 1) launch()
    }
    const launch = () => {
      if (settled || launched >= ups.length) return
      const i = launched++
      clearTimeout(stepTimer)
      stepTimer = launched < ups.length ? setTimeout(launch, step) : undefined
      const failed = () => failOne(i)
      attempts.push(proto === 'udp' ? udpAttempt(ups[i], wire, accept, failed) : tcpAttempt(ups[i], wire, accept, failed))
    }
    const deadline = setTimeout(() => finish(undefined), this.timeoutMs)
    this.forwards.add(cancel)
    launch()
  }
}

