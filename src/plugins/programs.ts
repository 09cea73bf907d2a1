import type {PluginConf} from './types.js'
import {OVERLAY_TYPE} from '../services/overlay/config.js'
import {firewallBackend} from '../kernel/netfilter/backends/index.js'

/**
 * The programs each embedded plugin runs for a given config entry, so that
 * the runtime can refuse a request before any kernel work when one is not
 * installed (lib/exec.ts names the Debian package). Kept beside the plugin
 * registry, one line per plugin: when a plugin starts a new program, add it
 * here. The programs of the firewall (masquerade, published ports, accepted
 * forwarding) are the firewall backend's.
 */
const FIREWALL = firewallBackend().programs

export function programsFor(type: string, p: PluginConf): string[] {
  switch (type) {
    case 'bridge':
      return [
        'ip',
        'nsenter',
        'sh',
        ...(p.ipMasq === true ? FIREWALL : []),
        ...(p.macspoofchk === true ? ['nft'] : []),
        ...(typeof p.vlan === 'number' && p.vlan !== 0 ? ['bridge'] : []),
      ]
    case OVERLAY_TYPE:
    case 'overlay':
      // its own device and peers (ip, bridge fdb), its state lock, then the bridge it delegates to
      return ['ip', 'bridge', 'flock', 'nsenter', 'sh', ...FIREWALL]
    case 'host-local':
      return ['flock']
    case 'static':
      return []
    case 'loopback':
      return ['ip', 'nsenter']
    case 'tuning':
      return ['ip', 'nsenter', 'sh', 'cat']
    case 'portmap':
      return ['ip', ...FIREWALL]
    case 'firewall':
      return [...FIREWALL]
    default:
      return []
  }
}
