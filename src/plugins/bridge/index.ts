import type {EmbeddedPlugin, PluginRequest} from '../types.js'
import {applyAdd, applyDel} from './apply.js'
import {checkBridge} from './check.js'
import {checkAddConf, loadBridgeConf} from './config.js'

/**
 * The bridge plugin of containernetworking/plugins v1.1.1, in-process:
 * config.ts parses the netconf, plan.ts turns it (with the IPAM result and
 * what is observed of the kernel) into kernel operations, apply.ts runs
 * them, check.ts is CHECK. IPAM is reached only through req.invokeIpam; its
 * config checks are the IPAM plugin's own precheck, run by the runtime.
 */

/**
 * GC (CNI 1.1): bridge keeps no per-attachment state of its own beyond what
 * DEL removes; its IPAM plugin does (leases), so GC is delegated to it with
 * the valid attachments, as the reference plugins of 1.1 do.
 */
async function gc(req: PluginRequest): Promise<void> {
  if (req.config.ipam?.type) await req.invokeIpam('GC', req.config)
}

/** The ADD's config checks that touch nothing (the runtime then runs its IPAM plugin's). */
function precheck(req: PluginRequest): void {
  checkAddConf(loadBridgeConf(req.config, req.args))
}

const plugin: EmbeddedPlugin = {precheck, add: applyAdd, del: applyDel, check: checkBridge, gc}
export default plugin
