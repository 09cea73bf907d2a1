import {existsSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {CniError, CNI_ERR, type CniResult, type EmbeddedPlugin, type ParseContext, type PluginNetConf, type PluginRequest} from '../types.js'
import {batchError, ipBatch, parseJsonLines, type IpCmd} from '../../kernel/ip/batch.js'
import {dottedToSlash, netSysctlKeyOf, readSysctlsIn, sysctlPath} from '../../kernel/sysctl.js'
import {assertIfName, cmdLinkSet, cmdLinkShow, normalizeMac, type IpLink} from '../../kernel/ip/link.js'
import {cmdAddrShow} from '../../kernel/ip/addr.js'
import {loadArgs} from '../cniargs.js'
import * as f from '../fields.js'

/**
 * tuning v1.1.1: container sysctls (under net.), mac, mtu, promisc, allmulti,
 * with the old link values backed up to <dataDir>/<cid>_<ifname>.json
 * (default /run/cni/tuning) and restored on DEL.
 */

const DEFAULT_DATA_DIR = '/run/cni/tuning'

export interface TuningConf {
  dataDir: string
  sysctl: Record<string, string>
  mac?: string
  promisc: boolean
  mtu: number
  allmulti?: boolean
}

/** configToRestore, in the field order Go marshals it */
interface Backup {
  mac?: string
  promisc?: boolean
  mtu?: number
  allmulti?: boolean
}

function bad(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg) // the reference returns plain errors: skel makes them 999
}
function fail(msg: string): CniError {
  return new CniError(CNI_ERR.INTERNAL, msg)
}

export function parseTuningConf(req: Pick<PluginRequest, 'config' | 'args'>): TuningConf {
  const c = req.config
  const sysctl: Record<string, string> = {}
  if (c.sysctl !== undefined && c.sysctl !== null) {
    if (typeof c.sysctl !== 'object') throw bad('failed to load netconf: sysctl must be an object')
    for (const [k, v] of Object.entries(c.sysctl as Record<string, unknown>)) {
      if (typeof v !== 'string') throw bad(`failed to load netconf: sysctl ${k} must be a string`)
      sysctl[k] = v
    }
  }
  const conf: TuningConf = {
    dataDir: typeof c.dataDir === 'string' && c.dataDir ? c.dataDir : DEFAULT_DATA_DIR,
    sysctl,
    mac: typeof c.mac === 'string' && c.mac ? c.mac : undefined,
    promisc: c.promisc === true,
    mtu: typeof c.mtu === 'number' ? c.mtu : 0,
    allmulti: typeof c.allmulti === 'boolean' ? c.allmulti : undefined,
  }
  const env = loadArgs(req.args, ['MAC'])
  if (env.MAC) conf.mac = env.MAC
  const rcMac = (c.runtimeConfig as {mac?: unknown} | undefined)?.mac
  if (typeof rcMac === 'string' && rcMac) conf.mac = rcMac
  const a = (c.args as {cni?: Record<string, unknown>} | undefined)?.cni
  if (a) {
    if (a.sysctl && typeof a.sysctl === 'object') for (const [k, v] of Object.entries(a.sysctl)) conf.sysctl[k] = String(v)
    if (typeof a.mac === 'string') conf.mac = a.mac
    if (typeof a.promisc === 'boolean') conf.promisc = a.promisc
    if (typeof a.mtu === 'number') conf.mtu = a.mtu
    if (typeof a.allmulti === 'boolean') conf.allmulti = a.allmulti
  }
  if (conf.mac !== undefined) {
    try {
      conf.mac = normalizeMac(conf.mac)
    } catch {
      throw fail(`invalid args ${conf.mac} for MAC addr`)
    }
  }
  if (!Number.isInteger(conf.mtu) || conf.mtu < 0) throw bad(`invalid mtu ${conf.mtu}`)
  return conf
}

/** The sysctl key (slash form) for a dotted tuning key, checked to stay under net/. */
export function sysctlKey(key: string, ifName: string): string {
  const rel = netSysctlKeyOf(dottedToSlash(key.replace('IFNAME', ifName)))
  if (rel === undefined) throw fail(`invalid net sysctl key: "${key}"`)
  return rel
}

function backupPath(dataDir: string, cid: string, ifName: string): string {
  return join(dataDir, `${cid}_${ifName}.json`)
}

/** json.MarshalIndent(config, "", " ") */
function marshalBackup(b: Backup): string {
  const o: Backup = {}
  if (b.mac) o.mac = b.mac
  if (b.promisc !== undefined) o.promisc = b.promisc
  if (b.mtu) o.mtu = b.mtu
  if (b.allmulti !== undefined) o.allmulti = b.allmulti
  return Object.keys(o).length ? JSON.stringify(o, null, ' ') : '{}'
}

async function add(req: PluginRequest, conf: TuningConf): Promise<CniResult> {
  const prev = req.config.prevResult
  if (!prev) throw fail('Required prevResult missing')
  const ifName = assertIfName(req.ifName)
  const sysctls = Object.entries(conf.sysctl).map(([k, v]) => [sysctlKey(k, ifName), v] as [string, string])
  const linkOps = conf.mac !== undefined || conf.mtu !== 0 || conf.promisc || conf.allmulti !== undefined
  const cmds: IpCmd[] = []
  if (linkOps) {
    // show first: its output is the state before the changes (the backup)
    cmds.push(cmdAddrShow(ifName))
    if (conf.mac) cmds.push(cmdLinkSet(ifName, 'address', conf.mac))
    if (conf.promisc) cmds.push(cmdLinkSet(ifName, 'promisc', 'on'))
    if (conf.mtu) cmds.push(cmdLinkSet(ifName, 'mtu', String(conf.mtu)))
    if (conf.allmulti !== undefined) cmds.push(cmdLinkSet(ifName, 'allmulticast', conf.allmulti ? 'on' : 'off'))
  }
  if (sysctls.length === 0 && cmds.length === 0) return prev
  const r = await ipBatch(cmds, {netns: req.netns, json: true, details: true, sysctls, sysctlStrict: true, allowFailure: true})
  const before = (parseJsonLines(r.stdout).flat() as IpLink[]).find((l) => l.ifname === ifName)
  if (linkOps && before) {
    const b: Backup = {}
    if (conf.mac) b.mac = before.address
    if (conf.promisc) b.promisc = (before.promiscuity ?? 0) !== 0
    if (conf.mtu) b.mtu = before.mtu
    if (conf.allmulti !== undefined) b.allmulti = (before.flags ?? []).includes('ALLMULTI')
    if (!existsSync(conf.dataDir)) mkdirSync(conf.dataDir, {recursive: true, mode: 0o600})
    writeFileSync(backupPath(conf.dataDir, req.containerId, ifName), marshalBackup(b), {mode: 0o600})
  }
  if (r.code !== 0) {
    const why = batchError(r)
    if (!before && linkOps && !/sysctl:/.test(why)) throw fail(`failed to get "${ifName}": ${why}`)
    throw fail(why)
  }
  if (conf.mac) {
    for (const i of prev.interfaces ?? []) if (i.name === ifName) i.mac = conf.mac
  }
  return prev
}

async function del(req: PluginRequest, conf: TuningConf | undefined): Promise<void> {
  // The reference ignores every error here (a config that did not parse too)
  // and keeps the backup when the link is gone.
  if (!conf) return
  const file = backupPath(conf.dataDir, req.containerId, req.ifName)
  if (!existsSync(file)) return
  let b: Backup
  try {
    b = JSON.parse(readFileSync(file, 'utf8')) as Backup
  } catch {
    return
  }
  if (!req.netns) return
  let ifName: string
  try {
    ifName = assertIfName(req.ifName)
  } catch {
    return
  }
  const cmds: IpCmd[] = [cmdAddrShow(ifName)]
  if (b.mtu) cmds.push(cmdLinkSet(ifName, 'mtu', String(b.mtu)))
  if (b.mac) cmds.push(cmdLinkSet(ifName, 'address', normalizeMac(b.mac)))
  if (b.promisc !== undefined) cmds.push(cmdLinkSet(ifName, 'promisc', b.promisc ? 'on' : 'off'))
  if (b.allmulti !== undefined) cmds.push(cmdLinkSet(ifName, 'allmulticast', b.allmulti ? 'on' : 'off'))
  const r = await ipBatch(cmds, {netns: req.netns, json: true, allowFailure: true}).catch(() => undefined)
  if (r && r.code === 0) rmSync(file, {force: true})
}

async function check(req: PluginRequest, conf: TuningConf): Promise<void> {
  if (!req.config.prevResult) throw fail('Required prevResult missing')
  const ifName = assertIfName(req.ifName)
  const keys = Object.keys(conf.sysctl).map((k) => sysctlKey(k, ifName))
  if (keys.length) {
    // one cat per check: values come back one per line, in order
    const lines = await readSysctlsIn(req.netns, keys)
    Object.values(conf.sysctl).forEach((want, i) => {
      if (lines[i] !== want) throw fail(`Error: Tuning configured value of ${sysctlPath(keys[i]!)} is ${want}, current value is ${lines[i]}`)
    })
  }
  const r = await ipBatch([cmdLinkShow(ifName)], {netns: req.netns, json: true, details: true, allowFailure: true})
  const link = (parseJsonLines(r.stdout).flat() as IpLink[])[0]
  if (!link) throw fail(`Cannot find container link ${ifName}`)
  if (conf.mac && conf.mac !== link.address) throw fail(`Error: Tuning configured Ethernet of ${ifName} is ${conf.mac}, current value is ${link.address}`)
  const promisc = (link.promiscuity ?? 0) !== 0
  if (conf.promisc !== promisc) throw fail(`Error: Tuning link ${ifName} configured promisc is ${conf.promisc}, current value is ${link.promiscuity ?? 0}`)
  if (conf.mtu && conf.mtu !== link.mtu) throw fail(`Error: Tuning configured MTU of ${ifName} is ${conf.mtu}, current value is ${link.mtu}`)
  if (conf.allmulti !== undefined && conf.allmulti !== link.flags.includes('ALLMULTI')) {
    throw fail(`Error: Tuning configured all-multicast mode of ${ifName} is ${conf.allmulti}, current value is ${!conf.allmulti}`)
  }
}

/** The fields of a tuning entry that reach the kernel, refused by name (`plugins[1].sysctl.<key>`). */
function checkFields(c: PluginNetConf, at: string): void {
  const opt = <T>(k: string, parse: (v: unknown, field: string) => T) => (f.given(c[k]) ? parse(c[k], `${at}.${k}`) : undefined)
  const sysctls = (v: unknown, field: string) => {
    for (const [k, val] of Object.entries(f.obj(v, field))) {
      const key = f.sysctlKey(k.replace('IFNAME', 'eth0'), `${field}.${k}`)
      f.sysctlValue(key, val, `${field}.${k}`)
    }
  }
  opt('sysctl', sysctls)
  if (f.given(c.mac) && c.mac !== '') f.mac(c.mac, `${at}.mac`)
  opt('mtu', (v, field) => f.intIn(v, field, 0, 65535))
  opt('txQLen', (v, field) => f.intIn(v, field, 0, 2 ** 31 - 1))
  opt('promisc', f.bool)
  opt('allmulti', f.bool)
  if (f.given(c.dataDir) && c.dataDir !== '') f.absPath(c.dataDir, `${at}.dataDir`)
  const a = f.given(c.args) ? f.obj(f.obj(c.args, `${at}.args`).cni ?? {}, `${at}.args.cni`) : {}
  if (f.given(a.sysctl)) sysctls(a.sysctl, `${at}.args.cni.sysctl`)
  if (f.given(a.mac)) f.mac(a.mac, `${at}.args.cni.mac`)
  if (f.given(a.mtu)) f.intIn(a.mtu, `${at}.args.cni.mtu`, 0, 65535)
}

/**
 * tuning's `parse`: its fields by name, then the reference's parseConf; an
 * ADD also resolves every sysctl key for the interface. A DEL whose config
 * does not parse gets undefined (it restores nothing, as before).
 */
function parse(config: PluginNetConf, at: string, ctx: ParseContext): TuningConf | undefined {
  checkFields(config, at)
  if (ctx.command === 'DEL') {
    try {
      return parseTuningConf({config, args: ctx.args})
    } catch {
      return undefined
    }
  }
  const conf = parseTuningConf({config, args: ctx.args})
  if (ctx.command === 'ADD') for (const k of Object.keys(conf.sysctl)) sysctlKey(k, assertIfName(ctx.ifName))
  return conf
}

// add and check get a parsed config (parse returns undefined for a DEL only)
const plugin: EmbeddedPlugin<TuningConf | undefined> = {
  parse,
  programs: () => ['ip', 'nsenter', 'sh', 'cat'],
  add: (req, conf) => add(req, conf!),
  del,
  check: (req, conf) => check(req, conf!),
}
export default plugin
