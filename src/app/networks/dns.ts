import {CtrnetError} from '../../sys/errors.js'
import {buildZone, type ZoneRecord, zoneRecords} from '../../services/dns/records.js'
import {networkMembers, type MemberOpts} from '../members.js'
import {type Warn, matchNetworks, single, visible} from './common.js'

/**
 * `network dns NETWORK`: the records the daemon's DNS serves for a network
 * now (its members: running containers attached on this host, every
 * namespace), computed the way the daemon computes them, so it answers with
 * or without a daemon running.
 */
export async function networkDnsRecords(s: MemberOpts & {confDir: string}, req: string, warn: Warn): Promise<{network: string; records: ZoneRecord[]}> {
  const {matches, errors} = matchNetworks(visible(s, warn), [req], false)
  const n = matches[0] ? single(matches[0], errors) : undefined
  if (!n) throw new CtrnetError('network dns', errors[0] ?? `no network found matching: ${req}`)
  const {members} = await networkMembers(s)
  return {network: n.name, records: zoneRecords(buildZone(n.name, members.get(n.name) ?? []))}
}
