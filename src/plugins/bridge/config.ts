import {CniError, CNI_ERR, type CniDns, type PluginNetConf} from '../types.js'
import {assertIfName, normalizeMac} from '../../kernel/ip/link.js'
import {loadArgs} from '../cniargs.js'

/** The bridge plugin's netconf (bridge.go NetConf of v1.1.1), parsed and checked. */
export interface BridgeConf {
  name: string
  cniVersion: string
  brName: string
  isGW: boolean
  isDefaultGW: boolean
  forceAddress: boolean
  ipMasq: boolean
  mtu: number
  hairpinMode: boolean
  promiscMode: boolean
  vlan: number
  macSpoofChk: boolean
  enableDad: boolean
  mac?: string
  ipamType: string
  dns: CniDns
}

function invalid(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg) // the reference returns plain errors: skel makes them 999
}

export function fail(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg)
}

function bool(v: unknown, key: string): boolean {
  if (v === undefined || v === null) return false
  if (typeof v !== 'boolean') throw invalid(`failed to load netconf: ${key} must be a boolean`)
  return v
}

function int(v: unknown, key: string): number {
  if (v === undefined || v === null) return 0
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(`failed to load netconf: ${key} must be an integer`)
  return v
}

export function loadBridgeConf(c: PluginNetConf, args: Array<[string, string]>): BridgeConf {
  const brName = c.bridge === undefined || c.bridge === '' ? 'cni0' : c.bridge
  const n: BridgeConf = {
    name: c.name,
    cniVersion: c.cniVersion,
    brName: assertIfName(brName, 'bridge name'),
    isGW: bool(c.isGateway, 'isGateway'),
    isDefaultGW: bool(c.isDefaultGateway, 'isDefaultGateway'),
    forceAddress: bool(c.forceAddress, 'forceAddress'),
    ipMasq: bool(c.ipMasq, 'ipMasq'),
    mtu: int(c.mtu, 'mtu'),
    hairpinMode: bool(c.hairpinMode, 'hairpinMode'),
    promiscMode: bool(c.promiscMode, 'promiscMode'),
    vlan: int(c.vlan, 'vlan'),
    macSpoofChk: bool(c.macspoofchk, 'macspoofchk'),
    enableDad: bool(c.enabledad, 'enabledad'),
    ipamType: typeof c.ipam?.type === 'string' ? c.ipam.type : '',
    dns: (c.dns as CniDns | undefined) ?? {},
  }
  if (n.vlan < 0 || n.vlan > 4094) throw invalid(`invalid VLAN ID ${n.vlan} (must be between 0 and 4094)`)
  if (n.mtu < 0 || n.mtu > 65535) throw invalid(`invalid MTU ${n.mtu}`)
  const env = loadArgs(args, ['MAC'])
  if (env.MAC) n.mac = env.MAC
  const argMac = (c.args as {cni?: {mac?: unknown}} | undefined)?.cni?.mac
  if (typeof argMac === 'string' && argMac) n.mac = argMac
  const rcMac = (c.runtimeConfig as {mac?: unknown} | undefined)?.mac
  if (typeof rcMac === 'string' && rcMac) n.mac = rcMac
  if (n.mac !== undefined) n.mac = normalizeMac(n.mac)
  return n
}

/** The checks of an ADD's config that touch nothing (hairpin and promiscuous mode exclude each other). */
export function checkAddConf(n: BridgeConf): void {
  if (n.hairpinMode && n.promiscMode) throw fail('cannot set hairpin mode and promiscuous mode at the same time.')
}
