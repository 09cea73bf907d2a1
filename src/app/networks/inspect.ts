import {CtrnetError, errorMessage} from '../../sys/errors.js'
import {formatCidr} from '../../kernel/ip/addr.js'
import {etcdClientOf} from '../../services/overlay/config.js'
import {listSlices} from '../../services/overlay/lease.js'
import {readState} from '../../services/overlay/state.js'
import {overlayNetworkOf} from '../../plugins/overlay/config.js'
import type {NetworkEntry} from '../../netconf/store.js'
import {inspectContainers, type ContainerdOpts} from '../usage.js'
import {type Warn, matchNetworks, single, visible} from './common.js'

/** `network inspect` (nerdctl's inspect.go); the containers come from containerd (app/usage.ts). */

export type InspectMode = 'dockercompat' | 'native'

function ipamConfig(conf: NetworkEntry['conf']): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = []
  for (const p of conf.plugins) {
    const ranges = (p.ipam as {ranges?: unknown} | undefined)?.ranges
    if (!Array.isArray(ranges)) continue
    for (const set of ranges) {
      if (!Array.isArray(set)) continue
      for (const r of set as Array<Record<string, unknown>>) {
        if (!r || typeof r !== 'object') continue
        const c: Record<string, string> = {}
        if (typeof r.subnet === 'string' && r.subnet) c.Subnet = r.subnet
        if (typeof r.gateway === 'string' && r.gateway) c.Gateway = r.gateway
        if (typeof r.ipRange === 'string' && r.ipRange) c.IPRange = r.ipRange
        out.push(c)
      }
    }
  }
  return out
}

/**
 * What an overlay network is across hosts: its VNI, etcd, and every host's
 * slice, underlay address and VTEP MAC as etcd has them now (Hosts is null,
 * with a warning, when etcd does not answer). Only for overlay networks.
 */
async function overlayInfo(n: NetworkEntry, warn: Warn): Promise<Record<string, unknown> | undefined> {
  let o
  try {
    o = overlayNetworkOf(n.conf)
  } catch (err) {
    warn(`network ${JSON.stringify(n.name)}: ${errorMessage(err)}`)
    return undefined
  }
  if (!o) return undefined
  const mine = readState(o.stateDir, o.name)
  let hosts: unknown[] | null = null
  try {
    hosts = (await listSlices(etcdClientOf(o), o.vni, o)).map((r) => ({
      Subnet: formatCidr(r.slice),
      Underlay: r.publicIp,
      VtepMAC: r.vtepMac,
      ThisHost: mine?.vni === o.vni && mine.slice === formatCidr(r.slice),
    }))
  } catch (err) {
    warn(`network ${JSON.stringify(n.name)}: hosts unknown: ${errorMessage(err)}`)
  }
  return {VNI: o.vni, Etcd: o.etcd, Subnet: formatCidr(o.subnet), HostSubnetSize: o.hostSubnetSize, Hosts: hosts}
}

/**
 * A Go struct field with `omitempty`: left out of the JSON when empty, yet
 * still there for a --format template (`{{.Id}}` prints "" rather than failing).
 */
function goField(o: Record<string, unknown>, key: string, value: unknown, omit: boolean): void {
  Object.defineProperty(o, key, {value, enumerable: !omit, writable: true, configurable: true})
}

export interface InspectResult {
  results: unknown[]
  errors: string[]
}

export async function inspectNetworks(s: ContainerdOpts & {confDir: string}, reqs: string[], mode: InspectMode, warn: Warn): Promise<InspectResult> {
  if (mode !== 'dockercompat' && mode !== 'native') throw new CtrnetError('network inspect', `unknown mode ${JSON.stringify(mode)}`)
  const {matches, errors} = matchNetworks(visible(s, warn), reqs, true)
  const results: unknown[] = []
  for (const m of matches) {
    const n = single(m, errors)
    if (!n) continue
    const containers = await inspectContainers(s, n.name)
    const overlay = await overlayInfo(n, warn)
    if (mode === 'native') {
      const list = Object.entries(containers).map(([id, c]) => ({Id: id, ...c}))
      const r: Record<string, unknown> = {CNI: JSON.parse(n.bytes.toString('utf8')), NerdctlID: n.nerdctlID ?? null}
      goField(r, 'NerdctlLabels', n.nerdctlLabels, n.nerdctlLabels === undefined)
      goField(r, 'File', n.file, n.file === '')
      r.Containers = list.length ? list : null
      if (overlay) r.Overlay = overlay
      results.push(r)
    } else {
      const r: Record<string, unknown> = {Name: n.name}
      goField(r, 'Id', n.nerdctlID ?? '', !n.nerdctlID)
      const cfg = overlay ? [{Subnet: overlay.Subnet as string}] : ipamConfig(n.conf)
      const ipam: Record<string, unknown> = {}
      goField(ipam, 'Config', cfg, cfg.length === 0)
      r.IPAM = ipam
      r.Labels = n.nerdctlLabels ?? null
      r.Containers = containers
      if (overlay) r.Overlay = overlay
      results.push(r)
    }
  }
  return {results, errors}
}
