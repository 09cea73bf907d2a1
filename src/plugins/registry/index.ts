import type {EmbeddedPlugin} from '../types.js'
import bridge from '../bridge/index.js'
import firewall from '../firewall/index.js'
import hostLocal from '../host-local/index.js'
import loopback from '../loopback/index.js'
import overlay from '../overlay/index.js'
import {OVERLAY_TYPE} from '../../services/overlay/config.js'
import portmap from '../portmap/index.js'
import staticIpam from '../static/index.js'
import tuning from '../tuning/index.js'

/**
 * The embedded plugins by CNI type. Any type not listed here is exec'd from
 * CNI_PATH by the runtime. They load with the runtime, which only the
 * commands that run chains import. The one module that knows every plugin; it
 * has a folder of its own so that the files at the root of src/plugins/
 * (types, cniargs, programs), which the plugins import, import no plugin.
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

export async function loadEmbedded(type: string): Promise<EmbeddedPlugin | undefined> {
  return Object.hasOwn(plugins, type) ? plugins[type] : undefined
}
