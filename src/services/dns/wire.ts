import dnsPacket, {type Answer, type DecodedPacket, type OptAnswer, type Packet} from 'dns-packet'
import {toRcode} from 'dns-packet/rcodes.js'
import {type ZoneRecord, ZONE_TTL} from './records.js'

/**
 * The DNS wire format as the server reads and answers it: dns-packet's
 * decoded query, the header guard run before dns-packet sees a message, the
 * TCP length prefix, and our answers (id, flags, question, EDNS).
 */

export type Proto = 'udp' | 'tcp'
/** A decoded query; dns-packet's decode also gives the opcode's name. */
export type Query = DecodedPacket & {opcode?: string}
/** Gives the client its answer (already framed for TCP); undefined: nothing to send, the query is over. */
export type Reply = (resp: Buffer | undefined) => void

export const NOERROR = toRcode('NOERROR')
export const FORMERR = toRcode('FORMERR')
export const SERVFAIL = toRcode('SERVFAIL')
export const NOTIMP = toRcode('NOTIMP')
/** the OPCODE field of dns-packet's 16-bit flags (RFC 1035 4.1.1), echoed in answers */
const OPCODE_BITS = 0x7800
/** the UDP payload size advertised in our EDNS answers (the DNS flag day 2020 value) */
const EDNS_UDP_SIZE = 1232

export const EMPTY = Buffer.alloc(0)

/** Where a DNS-over-TCP message ends: its 2-byte length prefix (RFC 1035 4.2.2). */
export function tcpFrameLength(buf: Buffer): number {
  return buf.readUInt16BE(0)
}

/** the most records (answer + authority + additional) a query may carry: OPT, TSIG, a few more */
export const MAX_QUERY_RECORDS = 8

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
export function plausible(msg: Buffer, isQuery: boolean): boolean {
  if (msg.length < 12) return false
  const qd = msg.readUInt16BE(4)
  const records = msg.readUInt16BE(6) + msg.readUInt16BE(8) + msg.readUInt16BE(10)
  if (qd * 5 + records * 11 > msg.length - 12) return false
  return !isQuery || (qd <= 1 && records <= MAX_QUERY_RECORDS)
}

export function optOf(q: Query): OptAnswer | undefined {
  for (const a of q.additionals ?? []) if (a.type === 'OPT') return a as OptAnswer
  return undefined
}

export function ednsAnswer(): OptAnswer {
  return {type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: []}
}

export function toAnswer(r: ZoneRecord): Answer {
  return {type: r.type, name: r.name, ttl: ZONE_TTL, class: 'IN', data: r.data}
}

/** Our answer to a query: its id, opcode, RD and CD, the question, RA; AA when the zone answers. */
export function responseTo(q: Query, rcode: number, answers: Answer[], {aa = false, tc = false} = {}): Packet {
  const flags =
    ((q.flags ?? 0) & (OPCODE_BITS | dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) |
    dnsPacket.RECURSION_AVAILABLE |
    (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) |
    (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) |
    rcode
  return {type: 'response', id: q.id, flags, questions: q.questions, answers, additionals: optOf(q) ? [ednsAnswer()] : []}
}

/** The largest UDP answer the client takes: 512, or its EDNS size up to ours. */
export function udpLimit(q: Query): number {
  const opt = optOf(q)
  return opt ? Math.max(512, Math.min(opt.udpPayloadSize, EDNS_UDP_SIZE)) : 512
}
