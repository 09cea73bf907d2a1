/**
 * The counters of the DNS server (DnsServer.stats() gives them with its
 * gauges), each with what it counts.
 */
export const STAT_KEYS = [
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
export type StatKey = (typeof STAT_KEYS)[number]

export type Counters = Record<StatKey, number>

/** Every counter at 0. */
export function newCounters(): Counters {
  return Object.fromEntries(STAT_KEYS.map((k) => [k, 0])) as Counters
}
