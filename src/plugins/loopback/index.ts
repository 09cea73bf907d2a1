import {CniError, CNI_ERR, type CniResult, type EmbeddedPlugin, type PluginRequest} from '../types.js'
import {batchError, ipBatch, parseJsonLines} from '../../kernel/ip/batch.js'
import {isNetnsGoneError, netnsExists} from '../../kernel/netns.js'
import {cmdAddrShow, parseIp, type IpAddrLink} from '../../kernel/ip/addr.js'
import {cmdLinkSet, cmdLinkShow, cmdLinkUp, type IpLink} from '../../kernel/ip/link.js'

/** loopback v1.1.1: lo up on ADD (one nsenter), down on DEL; a missing netns is fine on DEL. */

function isLoopbackIp(ip: string): boolean {
  const p = parseIp(ip)
  return p.v6 ? p.ip === '::1' : p.ip.startsWith('127.')
}

async function add(req: PluginRequest): Promise<CniResult> {
  if (!req.netns || !netnsExists(req.netns)) throw new CniError(CNI_ERR.INTERNAL, `failed to Statfs "${req.netns}": no such file or directory`)
  const r = await ipBatch([cmdLinkUp('lo'), cmdAddrShow('lo')], {netns: req.netns, json: true})
  const lo = (parseJsonLines(r.stdout).flat() as IpAddrLink[])[0]
  const v4 = (lo?.addr_info ?? []).filter((a) => a.family === 'inet')
  const v6 = (lo?.addr_info ?? []).filter((a) => a.family === 'inet6')
  for (const a of [...v4, ...v6]) {
    if (!isLoopbackIp(a.local)) throw new CniError(CNI_ERR.INTERNAL, `loopback interface found with non-loopback address "${a.local}"`)
  }
  if (req.config.prevResult) return req.config.prevResult
  const result: CniResult = {
    cniVersion: '1.0.0',
    interfaces: [{name: 'lo', mac: '00:00:00:00:00:00', sandbox: req.netns}],
    ips: [],
    dns: {},
  }
  if (v4.length) result.ips!.push({interface: 0, address: `${parseIp(v4[0].local).ip}/${v4[0].prefixlen}`})
  if (v6.length) result.ips!.push({interface: 0, address: `${parseIp(v6[0].local).ip}/${v6[0].prefixlen}`})
  return result
}

async function del(req: PluginRequest): Promise<void> {
  if (!req.netns || !netnsExists(req.netns)) return
  const r = await ipBatch([cmdLinkSet('lo', 'down')], {netns: req.netns, allowFailure: true})
  if (r.code !== 0 && !isNetnsGoneError(r.stderr)) throw new CniError(CNI_ERR.INTERNAL, batchError(r))
}

async function check(req: PluginRequest): Promise<void> {
  const r = await ipBatch([cmdLinkShow('lo')], {netns: req.netns, json: true})
  const lo = (parseJsonLines(r.stdout).flat() as IpLink[])[0]
  if (!lo || !lo.flags.includes('UP')) throw new CniError(CNI_ERR.INTERNAL, 'loopback interface is down')
}

// loopback reads nothing of its config
const plugin: EmbeddedPlugin<undefined> = {parse: () => undefined, programs: () => ['ip', 'nsenter'], add, del, check}
export default plugin
