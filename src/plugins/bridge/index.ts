import type {EmbeddedPlugin, PluginRequest} from '../types.js'
import {applyAdd, applyDel} from './apply.js'
import {checkBridge} from './check.js'
import {bridgeFirewallUse, bridgePrograms, parseBridge, type BridgeConf} from './config.js'

/**
 * The bridge plugin of containernetworking/plugins v1.1.1, in-process:
 * config.ts parses the netconf, plan.ts turns it (with the IPAM result and
 * what is observed of the kernel) into kernel operations, apply.ts runs
 * them, check.ts is CHECK. IPAM is reached only through req.invokeIpam; its
 * config is parsed by the runtime with bridge's.
 */

/**
 * GC (CNI 1.1): bridge keeps no per-attachment state of its own beyond what
 * DEL removes; its IPAM plugin does (leases), so GC is delegated to it with
 * the valid attachments, as the reference plugins of 1.1 do.
 */
async function gc(req: PluginRequest, n: BridgeConf): Promise<void> {
  if (n.ipamType) await req.invokeIpam('GC')
}

const plugin: EmbeddedPlugin<BridgeConf> = {
  parse: parseBridge,
  programs: bridgePrograms,
  firewallUse: bridgeFirewallUse,
  add: applyAdd,
  del: applyDel,
  check: checkBridge,
  gc,
}
export default plugin
