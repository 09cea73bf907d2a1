import {type CniResult, type EmbeddedPlugin, type PluginNetConf, type PluginRequest} from '../types.js'
import {formatCidr, parseCidr} from '../../kernel/ip/addr.js'
import {setupIpMasq, teardownIpMasq} from '../ipmasq/index.js'
import {IPTABLES_PROGRAMS} from '../programs.js'
import {type OverlayConf, loadOverlayConf} from './config.js'
import {joinOverlay, overlayMtu} from './host.js'
import {readState} from './state.js'

/**
 * The `overlay` meta plugin (flannel's CNI plugin and its vxlan backend in
 * one step): ADD makes sure this host holds a slice of the network in etcd,
 * that the VXLAN device and the peers' entries are in place, then delegates
 * to bridge + host-local with this host's slice (req.invokeDelegate). Its
 * result is bridge's. Container traffic leaving the overlay is masqueraded
 * (flannel's ipMasq rules: not towards the overlay subnet). DEL needs no
 * etcd: the slice comes from this host's state file.
 */

/** The bridge entry this host delegates to: the slice as host-local's only range. */
export function bridgeConfFor(o: OverlayConf, given: PluginNetConf, slice: string, mtu: number): PluginNetConf {
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

async function add(req: PluginRequest, o: OverlayConf): Promise<CniResult> {
  const {slice, mtu} = await joinOverlay(o)
  const result = (await req.invokeDelegate('ADD', bridgeConfFor(o, req.config, slice, mtu)))!
  const v4 = (result.ips ?? []).filter((i) => !i.address.includes(':'))
  await setupIpMasq(
    req.netfilter,
    o.name,
    req.containerId,
    v4.map((i) => ({address: `${i.address.split('/')[0]}/${o.subnet.prefix}`})),
  )
  return result
}

/** The slice of this host, from its state; the whole subnet when it has none (host-local releases by id anyway). */
function localSlice(o: OverlayConf): string {
  const s = readState(o.stateDir, o.name)
  return s && s.vni === o.vni ? s.slice : formatCidr(parseCidr(formatCidr(o.subnet)))
}

async function del(req: PluginRequest, o: OverlayConf): Promise<void> {
  await teardownIpMasq(req.netfilter, o.name, req.containerId, [{address: formatCidr(o.subnet)}])
  await req.invokeDelegate('DEL', bridgeConfFor(o, req.config, localSlice(o), o.mtu))
}

async function check(req: PluginRequest, o: OverlayConf): Promise<void> {
  await req.invokeDelegate('CHECK', bridgeConfFor(o, req.config, localSlice(o), await overlayMtu(o)))
}

const plugin: EmbeddedPlugin<OverlayConf> = {
  parse: (conf) => loadOverlayConf(conf),
  // its own device and peers (ip, bridge fdb), its state lock, then the bridge it delegates to
  programs: () => ['ip', 'bridge', 'flock', 'nsenter', 'sh', ...IPTABLES_PROGRAMS],
  add,
  del,
  check,
}
export default plugin
