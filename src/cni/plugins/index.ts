import type {EmbeddedPlugin} from '../types.js'

/**
 * The embedded plugins by CNI type. Each is loaded lazily so a chain only
 * pays for the modules it uses. Any type not listed here is exec'd from
 * CNI_PATH by the runtime.
 */
const loaders: Record<string, () => Promise<EmbeddedPlugin>> = {
  bridge: () => import('./bridge.js').then((m) => m.default),
  'host-local': () => import('./host-local.js').then((m) => m.default),
  static: () => import('./static.js').then((m) => m.default),
  loopback: () => import('./loopback.js').then((m) => m.default),
  tuning: () => import('./tuning.js').then((m) => m.default),
  portmap: () => import('./portmap.js').then((m) => m.default),
  firewall: () => import('./firewall.js').then((m) => m.default),
}

export const EMBEDDED_TYPES = Object.keys(loaders)

export async function loadEmbedded(type: string): Promise<EmbeddedPlugin | undefined> {
  const load = loaders[type]
  return load ? load() : undefined
}
