import {CniError, CNI_ERR, type CniDns, type FirewallUse, type ParseContext, type PluginConf, type PluginNetConf} from '../types.js'
import {assertIfName, normalizeMac} from '../../kernel/ip/link.js'
import {loadArgs} from '../cniargs.js'
import * as f from '../fields.js'
import {isFirewallBackendName, type FirewallBackendName} from '../../kernel/netfilter/backends/index.js'

/** The bridge plugin's netconf (bridge.go NetConf of v1.1.1), parsed and checked. */
export interface BridgeConf {
  name: string
  cniVersion: string
  brName: string
  isGW: boolean
  isDefaultGW: boolean
  forceAddress: boolean
  ipMasq: boolean
  /** `ipMasqBackend` (plugins >= 1.6): where the masquerade goes; absent: the reference's rule. */
  ipMasqBackend?: FirewallBackendName
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
  if (c.ipMasqBackend != null) {
    // pkg/ip SetupIPMasqForNetworks (refused there at ADD with ipMasq; here whenever it is given)
    if (!isFirewallBackendName(c.ipMasqBackend)) throw invalid(`unknown ipmasq backend ${JSON.stringify(String(c.ipMasqBackend))}`)
    n.ipMasqBackend = c.ipMasqBackend
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

/**
 * The fields of a bridge entry that reach the kernel, refused by name
 * (`plugins[0].mtu`) before the reference-compatible parser sees them.
 */
function checkFields(c: PluginNetConf, at: string): void {
  const opt = <T>(k: string, parse: (v: unknown, field: string) => T) => (f.given(c[k]) ? parse(c[k], `${at}.${k}`) : undefined)
  if (f.given(c.bridge) && c.bridge !== '') f.ifName(c.bridge, `${at}.bridge`)
  opt('mtu', (v, field) => f.intIn(v, field, 0, 65535))
  opt('vlan', (v, field) => f.intIn(v, field, 0, 4094))
  for (const k of ['isGateway', 'isDefaultGateway', 'forceAddress', 'ipMasq', 'hairpinMode', 'promiscMode', 'macspoofchk', 'enabledad', 'disableContainerInterface']) opt(k, f.bool)
  opt('ipMasqBackend', f.firewallBackendName)
  if (f.given(c.vlanTrunk)) f.list(c.vlanTrunk, `${at}.vlanTrunk`)
  const a = f.given(c.args) ? f.obj(f.obj(c.args, `${at}.args`).cni ?? {}, `${at}.args.cni`) : {}
  if (f.given(a.mac)) f.mac(a.mac, `${at}.args.cni.mac`)
  if (f.given(c.ipam)) f.obj(c.ipam, `${at}.ipam`)
}

/** The bridge plugin's `parse`: its fields by name, then bridge.go's loadNetConf; an ADD also checks the modes. */
export function parseBridge(c: PluginNetConf, at: string, ctx: ParseContext): BridgeConf {
  checkFields(c, at)
  const n = loadBridgeConf(c, ctx.args)
  if (ctx.command === 'ADD') checkAddConf(n)
  return n
}

/** ip and its container batch; nft for the spoof check, bridge(8) for a VLAN (the masquerade's: bridgeFirewallUse). */
export function bridgePrograms(n: BridgeConf): string[] {
  return ['ip', 'nsenter', 'sh', ...(n.macSpoofChk ? ['nft'] : []), ...(n.vlan !== 0 ? ['bridge'] : [])]
}

/** The masquerade (ipMasq) goes to `ipMasqBackend`, else to the reference's default backend. */
export function bridgeFirewallUse(n: BridgeConf): FirewallUse {
  return {needs: n.ipMasq, ...(n.ipMasqBackend ? {named: n.ipMasqBackend} : {}), otherwise: 'default'}
}

/** Whether a conflist entry is a bridge that holds its network's gateway address (`isGateway`): where a DNS server can listen. */
export function isGatewayBridge(entry: PluginConf | undefined): boolean {
  return entry?.type === 'bridge' && entry.isGateway === true
}
