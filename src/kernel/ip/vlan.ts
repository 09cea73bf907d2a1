import {run} from '../../sys/exec.js'
import {assertIfName} from './link.js'

/** VLANs of bridge ports, through iproute2's `bridge` program. */

/**
 * Tags a bridge port with vid as its PVID, untagged on egress: netlink's
 * BridgeVlanAdd(link, vid, pvid=true, untagged=true, self=false, master=true).
 */
export async function bridgeVlanAdd(dev: string, vid: number): Promise<void> {
  await run('bridge', ['vlan', 'add', 'dev', assertIfName(dev), 'vid', String(vid), 'pvid', 'untagged', 'master'])
}
