import {CNI_ERR, CniError, type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import {formatCidr, parseCidr} from '../../kernel/ip/addr.js'
import {joinOverlay, overlayMtu} from '../../services/overlay/host.js'
import {readState} from '../../services/overlay/state.js'
import {OverlayError, type OverlayFault} from '../../services/overlay/errors.js'
import {type OverlayPluginConf, loadOverlayConf} from './config.js'

/**
 * The `overlay` meta plugin (flannel's CNI plugin and its vxlan backend in
 * one step): ADD makes sure this host holds a slice of the network in etcd,
 * that the VXLAN device and the peers' entries are in place, then delegates
 * to bridge + host-local with this host's slice (req.invokeDelegate). Its
 * result is bridge's. Container traffic leaving the overlay is masqueraded
 * (flannel's ipMasq rules: not towards the overlay subnet). DEL needs no
 * etcd: the slice comes from this host's state file. The overlay service
 * (src/services/overlay/) does the work; this plugin is its CNI face.
 */

/** The CNI error code of each fault of the overlay service. */
const CNI_CODE: Record<OverlayFault, number> = {
  config: CNI_ERR.INVALID_NETCONF,
  underlay: CNI_ERR.INTERNAL,
  etcd: CNI_ERR.TRY_AGAIN_LATER,
}

/** Runs fn; a fault of the overlay service becomes the CNI error of its kind, with its message. */
async function asCni<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw asCniError(err)
  }
}

function asCniError(err: unknown): unknown {
  return err instanceof OverlayError ? new CniError(CNI_CODE[err.fault], err.message) : err
}

/** The plugin's config (./config.ts), parsed once; its faults as CNI errors. */
function parse(conf: PluginNetConf): OverlayPluginConf {
  try {
    return loadOverlayConf(conf)
  } catch (err) {
    throw asCniError(err)
  }
}

/** The bridge entry this host delegates to: the slice as host-local's only range. */
export function bridgeConfFor(o: OverlayPluginConf, given: PluginNetConf, slice: string, mtu: number): PluginNetConf {
  const ipam: Record<string, unknown> = {type: 'host-local', ranges: [[{subnet: slice}]], routes: [{dst: '0.0.0.0/0'}]}
  if (o.ipamDataDir) ipam.dataDir = o.ipamDataDir
  const conf: PluginNetConf = {
    type: 'bridge',
    name: o.name,
    cniVersion: o.cniVersion,
    bridge: o.bridge,
    isGateway: true,
    ...(mtu ? {mtu} : {}),
    hairpinMode: true,
    ipam: ipam as PluginNetConf['ipam'],
  }
  for (const k of ['prevResult', 'runtimeConfig', 'args'] as const) if (given[k] !== undefined) (conf as Record<string, unknown>)[k] = given[k]
  return conf
}

async function add(req: PluginRequest, o: OverlayPluginConf): Promise<CniResult> {
  const {slice, mtu} = await asCni(() => joinOverlay(o))
  const result = (await req.invokeDelegate('ADD', bridgeConfFor(o, req.config, slice, mtu)))!
  const v4 = (result.ips ?? []).filter((i) => !i.address.includes(':'))
  // masqueraded unless towards the overlay: each address with the overlay's prefix
  await req.firewall.masquerade({
    network: o.name,
    containerId: req.containerId,
    ifName: req.ifName,
    addresses: v4.map((i) => `${i.address.split('/')[0]}/${o.subnet.prefix}`),
  })
  return result
}

function localSlice(o: OverlayPluginConf): string {
  const s = readState(o.stateDir, o.name)
  return s && s.vni === o.vni ? s.slice : formatCidr(parseCidr(formatCidr(o.subnet)))
}

async function del(req: PluginRequest, o: OverlayPluginConf): Promise<void> {
  await req.firewall.removeMasquerade({network: o.name, containerId: req.containerId, ifName: req.ifName, addresses: [formatCidr(o.subnet)]})
  await req.invokeDelegate('DEL', bridgeConfFor(o, req.config, localSlice(o), o.mtu))
}

async function check(req: PluginRequest, o: OverlayPluginConf): Promise<void> {
  await req.invokeDelegate('CHECK', bridgeConfFor(o, req.config, localSlice(o), await overlayMtu(o)))
}

const plugin: EmbeddedPlugin<OverlayPluginConf> = {
  parse,
  // its own device and peers (ip, bridge fdb), its state lock, then the bridge it delegates to
  programs: () => ['ip', 'bridge', 'flock', 'nsenter', 'sh'],
  // its masquerade goes to the network's backend (the one its portmap entry names, else the default)
  firewallUse: () => ({needs: true, otherwise: 'network'}),
  add,
  del,
  check,
}
export default plugin
