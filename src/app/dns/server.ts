import dgram from 'node:dgram'
import net from 'node:net'
import dnsPacket, {type Answer, type DecodedPacket, type OptAnswer, type Packet} from 'dns-packet'
import {toRcode} from 'dns-packet/rcodes.js'
import {parseIp} from '../../kernel/ip/addr.js'
import {type DnsMember, type Zone, type ZoneRecord, ZONE_TTL, buildZone, emptyZone, foldName, lookup, zoneRecords} from './records.js'
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

/** An upstream resolver, parsed. */
export interface Upstream {
  address: string
  port: number
  v6: boolean
}

/** A listener address that could not be bound, and why. */
export interface ListenFailure {
  address: string
  reason: string
  /** the errno code (EADDRNOTAVAIL while the bridge has no such address yet, EADDRINUSE, ...) */
  code?: string
}

const STAT_KEYS = [
  /** datagrams and TCP messages received */
  'received',
  /** decoded queries */
  'queries',
  /** answered from the zone with records */
  'answered',
  /** answered from the zone with no record of the type (NOERROR, no answers) */
  'nodata',
  /** forwarded answers that were NXDOMAIN */
  'nxdomain',
  /** queries sent to the upstreams */
  'forwarded',
  /** upstream answers relayed */
  'forwardAnswered',
  /** SERVFAIL given (no upstream answered, none configured, or too many in flight) */
  'servfail',
  /** forwards refused because maxForwards were in flight */
  'forwardOverload',
  'formerr',
  'notimp',
  /** UDP answers too large, sent empty with TC */
  'truncated',
  /** dropped: does not decode, or not a query */
  'malformed',
  'tcpAccepted',
  'tcpRejected',
  'tcpIdleClosed',
  'tcpOversized',
  'tcpWriteOverflow',
] as const
type StatKey = (typeof STAT_KEYS)[number]

type Proto = 'udp' | 'tcp'
/** A decoded query; dns-packet's decode also gives the opcode's name. */
type Query = DecodedPacket & {opcode?: string}
/** Gives the client its answer (already framed for TCP); undefined: nothing to send, the query is over. */
type Reply = (resp: Buffer | undefined) => void

const NOERROR = toRcode('NOERROR')
const FORMERR = toRcode('FORMERR')
const SERVFAIL = toRcode('SERVFAIL')
const NOTIMP = toRcode('NOTIMP')
/** the OPCODE field of dns-packet's 16-bit flags (RFC 1035 4.1.1), echoed in answers */
const OPCODE_BITS = 0x7800
/** the UDP payload size advertised in our EDNS answers (the DNS flag day 2020 value) */
const EDNS_UDP_SIZE = 1232
/** queries of one TCP connection in progress at once; beyond, its socket is paused */
const TCP_PIPELINE = 16
/** answers a TCP client may leave unread before it is dropped */
const TCP_WRITE_LIMIT = 256 * 1024
/** glibc's MAXNS */
const MAX_UPSTREAMS = 3
const EMPTY = Buffer.alloc(0)

/** Where a DNS-over-TCP message ends: its 2-byte length prefix (RFC 1035 4.2.2). */
function tcpFrameLength(buf: Buffer): number {
  return buf.readUInt16BE(0)
}

/** the most records (answer + authority + additional) a query may carry: OPT, TSIG, a few more */
const MAX_QUERY_RECORDS = 8

/**
 * The header guard, before dns-packet sees a message. dns-packet's decode
 * allocates each section as `new Array(count)` from the header's unchecked
 * 16-bit counts before reading one record, so 12 random bytes cost it about
 * 10 ms (measured: 2000 random datagrams took 20 s): a flood of them would
 * stall the server. So the four counts (RFC 1035 4.1.1, read here and
 * nowhere else) must fit the message (a question takes at least 5 bytes, a
 * record at least 11), and a query must have at most one question and a few
 * records (none legitimately has more; this also bounds the names whose
 * compression pointers dns-packet follows).
 */
function plausible(msg: Buffer, isQuery: boolean): boolean {
  if (msg.length < 12) return false
  const qd = msg.readUInt16BE(4)
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10)
  if (qd * 5 + records * 11 > msg.length - 12) return false
  return !isQuery || (qd <= 1 && records <= MAX_QUERY_RECORDS)
}

function errCode(err: unknown): string | undefined {
  const c = (err as {code?: unknown})?.code
  return typeof c === 'string' ? c : undefined
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Parses `address` or `address#port`. Throws on anything else. */
export function parseUpstream(text: string): Upstream {
  const hash = text.lastIndexOf('#')
  const addr = hash < 0 ? text : text.slice(0, hash)
  const portText = hash < 0 ? '53' : text.slice(hash + 1)
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN
  if (!(port >= 1 && port <= 65535)) throw new Error(`invalid upstream DNS server ${JSON.stringify(text)}: port must be 1-65535`)
  let p: {v6: boolean; ip: string}
  try {
    p = parseIp(addr, {keepMapped: true})
  } catch {
    throw new Error(`invalid upstream DNS server ${JSON.stringify(text)}: not an IP address (address or address#port)`)
  }
  return {address: p.ip, port, v6: p.v6}
}

/**
 * The nameservers of a resolv.conf text, in order, at most 3 (glibc reads no
 * more); lines that are not `nameserver <IP>` are ignored, as are addresses
 * with a zone (`fe80::1%eth0`).
 */
export function upstreamsFromResolvConf(text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const words = line.replace(/[#;].*$/, '').trim().split(/\s+/)
    if (words[0] !== 'nameserver' || words.length < 2 || words[1].includes('%')) continue
    try {
      const p = parseIp(words[1], {keepMapped: true})
      if (!out.includes(p.ip)) out.push(p.ip)
    } catch {
      continue
    }
    if (out.length === MAX_UPSTREAMS) break
  }
  return out
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

function optOf(q: Query): OptAnswer | undefined {
  for (const a of q.additionals ?? []) if (a.type === 'OPT') return a as OptAnswer
  return undefined
}

function ednsAnswer(): OptAnswer {
  return {type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: []}
}

function toAnswer(r: ZoneRecord): Answer {
  return {type: r.type, name: r.name, ttl: ZONE_TTL, class: 'IN', data: r.data}
}

/** Our answer to a query: its id, opcode, RD and CD, the question, RA; AA when the zone answers. */
function responseTo(q: Query, rcode: number, answers: Answer[], {aa = false, tc = false} = {}): Packet {
  const flags =
    ((q.flags ?? 0) & (OPCODE_BITS | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) |
    dnsPacket.RECURSION_AVAILABLE |
    (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) |
    (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) |
    rcode
  return {type: 'response', id: q.id, flags, questions: q.questions, answers, additionals: optOf(q) ? [ednsAnswer()] : []}
}

/** The largest UDP answer the client takes: 512, or its EDNS size up to ours. */
function udpLimit(q: Query): number {
  const opt = optOf(q)
  return opt ? Math.max(512, Math.min(opt.udpPayloadSize, EDNS_UDP_SIZE)) : 512
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
  private readonly counters: Record<StatKey, number>

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
    this.counters = Object.fromEntries(STAT_KEYS.map((k) => [k, 0])) as Record<StatKey, number>
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
    sock.setNoDelay(true)
    let buf: Buffer = EMPTY
    let pending = 0
    let pumping = false
    let ended = false
    let idle: NodeJS.Timeout | undefined
    const drop = (why?: StatKey) => {
      if (why) this.counters[why]++
      sock.destroy()
    }
    // The idle clock runs while nothing is pending, from the last answer (or
    // the connection); bytes of an incomplete message do not reset it.
    const idleClock = () => {
      if (pending > 0 || sock.destroyed) {
        clearTimeout(idle)
        idle = undefined
      } else if (idle === undefined) {
        idle = setTimeout(() => drop('tcpIdleClosed'), this.tcpIdleMs)
      }
    }
    const reply: Reply = (resp) => {
      pending--
      if (resp !== undefined && !sock.destroyed) {
        if (sock.writableLength > TCP_WRITE_LIMIT) drop('tcpWriteOverflow')
        else sock.write(resp)
      }
      if (!pumping) pump()
    }
    const pump = () => {
      pumping = true
      while (!sock.destroyed && pending < TCP_PIPELINE && buf.length >= 2) {
        const len = tcpFrameLength(buf)
        if (len > this.maxTcpMessageBytes) return drop('tcpOversized')
        if (len === 0) {
          this.counters.received++
          return drop('malformed')
        }
        if (buf.length < 2 + len) break
        const frame = buf.subarray(0, 2 + len)
        buf = buf.length === 2 + len ? EMPTY : buf.subarray(2 + len)
        clearTimeout(idle)
        idle = undefined
        pending++
        if (!this.handle(l.network, frame, 'tcp', reply)) {
          pending--
          return drop()
        }
      }
      pumping = false
      if (sock.destroyed) return
      if (ended && pending === 0) {
        // the client sent its last query and has every answer
        sock.end()
        return
      }
      if (pending >= TCP_PIPELINE) sock.pause()
      else if (sock.isPaused()) sock.resume()
      idleClock()
    }
    idleClock()
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      if (!pumping) pump()
    })
    sock.on('end', () => {
      // half-closed after its queries: answer those, then close (an
      // incomplete message left over is dropped)
      ended = true
      buf = buf.length >= 2 && buf.length >= 2 + tcpFrameLength(buf) ? buf : EMPTY
      if (!pumping) pump()
    })
    const gone = () => {
      if (!l.conns.delete(sock)) return
      clearTimeout(idle)
      idle = undefined
      buf = EMPTY
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

/**
 * One query to one upstream over UDP, from its own connected socket (a fresh
 * source port per query). Calls fail once if the socket fails (ICMP refusal
 * included); answers that do not match are ignored. Returns its end.
 */
function udpAttempt(up: Upstream, query: Buffer, accept: (resp: Buffer) => boolean, fail: () => void): () => void {
  const s = dgram.createSocket(up.v6 ? 'udp6' : 'udp4')
  let over = false
  const end = () => {
    if (over) return
    over = true
    s.close()
  }
  const failed = () => {
    if (over) return
    end()
    fail()
  }
  s.on('error', failed)
  s.on('message', (m) => void accept(m))
  s.connect(up.port, up.address, () => {
    if (!over) s.send(query, (err) => err && failed())
  })
  return end
}

/** One query to one upstream over TCP (the client's framed message as it came). Calls fail once on any error, close or non-matching answer. */
function tcpAttempt(up: Upstream, frame: Buffer, accept: (resp: Buffer) => boolean, fail: () => void): () => void {
  const s = net.connect({host: up.address, port: up.port})
  let over = false
  let buf: Buffer = EMPTY
  const end = () => {
    if (over) return
    over = true
    s.destroy()
  }
  const failed = () => {
    if (over) return
    end()
    fail()
  }
  s.setNoDelay(true)
  s.on('connect', () => s.write(frame))
  s.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    if (buf.length < 2) return
    const len = tcpFrameLength(buf)
    if (buf.length < 2 + len) return
    if (!accept(buf.subarray(0, 2 + len))) failed()
  })
  s.on('error', failed)
  s.on('close', failed)
  return end
}
