import type {EmbeddedPlugin} from '../types.js'
import bridge from '../bridge/index.js'
import firewall from '../firewall/index.js'
import hostLocal from '../host-local/index.js'
import loopback from '../loopback/index.js'
import overlay from '../overlay/index.js'
import {OVERLAY_TYPE} from '../overlay/config.js'
import portmap from '../portmap/index.js'
import staticIpam from '../static/index.js'
import tuning from '../tuning/index.js'

/**
 * The embedded plugins by CNI type. Any type not listed here is exec'd from
 * CNI_PATH by the runtime. They load with the runtime, which only the
 * commands that run chains import.
 */
const plugins: Record<string, EmbeddedPlugin> = {
  bridge,
  'host-local': hostLocal,
  static: staticIpam,
  loopback,
  tuning,
  portmap,
  firewall,
  // the exec'd plugin's name, and the type of conflists written before it
  [OVERLAY_TYPE]: overlay,
  overlay,
}

/** The embedded plugin of a CNI type, or undefined for a type that is exec'd. */
export function embeddedPlugin(type: string): EmbeddedPlugin | undefined {
  return Object.hasOwn(plugins, type) ? plugins[type] : undefined
}
