import {randomBytes} from 'node:crypto'
import {run} from '../../sys/exec.js'
import type {IpCmd} from './batch.js'
import {ifNameFault, showToken} from '../tokens.js'

export {bridgePorts, isBridge, linkAttr, linkExists, linkMac} from '../sysfs.js'

/**
 * Links. Reads of the current namespace go through sysfs (../sysfs.ts, no process);
 * changes are ip batch commands built here and run by ipBatch.
 */

/** Interface name rules: 1-15 chars, no '/', ':' or whitespace, not '.'/'..', not starting with '-'. */
export function validIfName(name: unknown): name is string {
  return ifNameFault(name) === undefined
}

export function assertIfName(name: unknown, what = 'interface name'): string {
  const f = ifNameFault(name)
  if (f) throw new Error(`invalid ${what} ${showToken(name)} : ${f}`)
  return name as string
}

/** A positive integer (MTU, queue length) rendered from a number, or a refusal naming the field. */
function uintToken(v: number, what: string, max = 0x7fffffff): string {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`invalid ${what} ${showToken(v)} : not an integer 0..${max}`)
  return String(v)
}

/** Deletes a link in the current network namespace; no error when it is absent. */
export async function deleteLinkIfExists(name: string): Promise<boolean> {
  assertIfName(name)
  const res = await run('ip', ['link', 'del', 'dev', name], {allowFailure: true})
  if (res.code === 0) return true
  if (/cannot find device|does not exist/i.test(res.stderr)) return false
  throw new Error(`ip link del ${name}: ${res.stderr.trim()}`)
}

/** "veth" + 8 random hex digits, like the reference ip.RandomVethName. */
export function randomVethName(): string {
  return `veth${randomBytes(4).toString('hex')}`
}

// ---- ip batch command builders ----

export function cmdBridgeAdd(name: string, opts: {mtu?: number; vlanFiltering?: boolean} = {}): IpCmd {
  const cmd = ['link', 'add', 'name', assertIfName(name, 'bridge name')]
  if (opts.mtu) cmd.push('mtu', uintToken(opts.mtu, 'mtu'))
  cmd.push('type', 'bridge')
  if (opts.vlanFiltering) cmd.push('vlan_filtering', '1')
  return cmd
}

/** veth pair: `host` here, `peer` created directly in the namespace at netnsPath. */
export function cmdVethAdd(host: string, peer: string, netnsPath: string | undefined, opts: {mtu?: number; peerMac?: string; txqlen?: number} = {}): IpCmd {
  const cmd = ['link', 'add', 'name', assertIfName(host, 'veth name')]
  const txq = opts.txqlen !== undefined ? uintToken(opts.txqlen, 'txqueuelen') : undefined
  const mtu = opts.mtu ? uintToken(opts.mtu, 'mtu') : undefined
  if (txq !== undefined) cmd.push('txqueuelen', txq)
  if (mtu) cmd.push('mtu', mtu)
  cmd.push('type', 'veth', 'peer', 'name', assertIfName(peer, 'veth peer name'))
  if (txq !== undefined) cmd.push('txqueuelen', txq)
  if (mtu) cmd.push('mtu', mtu)
  if (opts.peerMac) cmd.push('address', normalizeMac(opts.peerMac))
  if (netnsPath !== undefined) cmd.push('netns', netnsPath)
  return cmd
}

export function cmdLinkSet(name: string, ...attrs: string[]): IpCmd {
  return ['link', 'set', 'dev', assertIfName(name), ...attrs]
}

export function cmdLinkUp(name: string): IpCmd {
  return cmdLinkSet(name, 'up')
}

export function cmdLinkDel(name: string): IpCmd {
  return ['link', 'del', 'dev', assertIfName(name)]
}

/**
 * NB: `link show` switches ip's global filter to link mode for the rest of a
 * batch (later `addr show`/`addr add` misbehave). Use it only as the last
 * command, or use `addr show`, which also prints the link (MAC, flags).
 */
export function cmdLinkShow(name: string): IpCmd {
  return ['link', 'show', 'dev', assertIfName(name)]
}

/** One entry of `ip -j [-d] link show`. */
export interface IpLink {
  ifindex: number
  ifname: string
  link_index?: number
  link?: string
  flags: string[]
  mtu: number
  master?: string
  operstate?: string
  address?: string
  promiscuity?: number
  linkinfo?: {info_kind?: string; info_slave_kind?: string; info_data?: Record<string, unknown>; info_slave_data?: Record<string, unknown>}
  [k: string]: unknown
}

export const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/
export function normalizeMac(mac: string): string {
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) throw new Error(`invalid MAC address ${showToken(mac)}`)
  return mac.toLowerCase()
}
