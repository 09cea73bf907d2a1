import type {ContainerInfo} from '../containerd/client.js'
import {InvalidField, dnsName} from '../plugins/fields.js'
import {intentOf, NAME_LABEL} from '../netconf/labels.js'

/**
 * The names a container has on a network's DNS (and in `network inspect`'s
 * DNSNames, as Docker's endpoint settings): its `nerdctl/name`, its full id,
 * its 12-character short id, and the aliases its `ctrnet/networks` entry for
 * that network gives (`network connect --alias`). The DNS server answers each
 * also as `<name>.<network>`. A label value that is not a DNS name (any
 * client writes labels) is left out, never served; so is a 64-character id
 * (nerdctl's, Docker's): a DNS label holds at most 63 octets (RFC 1035).
 */
export function dnsNamesOf(c: Pick<ContainerInfo, 'id' | 'labels'>, network: string): string[] {
  return valid([c.labels?.[NAME_LABEL], c.id, c.id.slice(0, 12), ...aliasesOf(c, network)])
}

/**
 * The names of its line in nerdctl's hosts files: its `nerdctl/name` (else
 * its short id, as a hostname), then its aliases; never the 64-character id.
 */
export function hostsNamesOf(c: Pick<ContainerInfo, 'id' | 'labels'>, network: string): string[] {
  return valid([c.labels?.[NAME_LABEL] ?? c.id.slice(0, 12), ...aliasesOf(c, network)])
}

function aliasesOf(c: Pick<ContainerInfo, 'labels'>, network: string): string[] {
  const intent = intentOf(c.labels)
  return intent && 'networks' in intent ? (intent.networks.find((n) => n.network === network)?.aliases ?? []) : []
}

function valid(names: Array<string | undefined>): string[] {
  return [...new Set(names.filter((n): n is string => n !== undefined && isDnsName(n)))]
}

function isDnsName(v: string): boolean {
  try {
    dnsName(v, 'name')
    return true
  } catch (err) {
    if (err instanceof InvalidField) return false
    throw err
  }
}
