import {existsSync, lstatSync} from 'node:fs'
import {validateContainerId, validateIfName, validateNetworkName} from './args.js'
import {
  type Attachment,
  type AttachmentKey,
  type CacheRecord,
  entryPaths,
  listAttachments,
  readAttachment,
  removeCachedAttachment,
  removePending,
  writeCachedAttachment,
  writePending,
} from './cache.js'
import {isTypedRuntimeConf, type RuntimeConf} from './conf.js'
import {execPlugin, findInPath} from './invoke.js'
import {ChainFirewalls} from './firewalls.js'
import type {LoadedConf} from './loader.js'
import {isProcNetnsPath} from '../kernel/netns.js'
import {embeddedPlugin} from '../plugins/registry/index.js'
import {CNI_ERR, CniError, type CniCommand, type CniResult, type NetConfList, type PluginConf, type PluginNetConf, type PluginRequest} from '../plugins/types.js'
import {firstParseError, parseContext, parsePlugin, parseRequest, requireProgramsOf, stdinFor, type ParsedPlugin} from './chain.js'
import * as validate from './validate.js'
import {assertSupportedVersion, resultAsVersion, SUPPORTED_VERSIONS, toInternalResult, versionAtLeast} from './version.js'

export type CniMode = 'embedded' | 'exec'

export interface RuntimeOptions {
  cniPath: string[]
  cacheDir: string
  mode?: CniMode
  execTimeoutMs?: number
  /** The flock every ctrnet process takes to change iptables (default: the iptables backend's). */
  iptablesLockPath?: string
}

export type {RuntimeConf}

export interface GcReport {
  /** Attachments that were (or, in a dry run, would be) deleted. */
  removed: Array<{containerId: string; ifName: string; netns?: string; pending: boolean}>
  errors: string[]
}

/** A conflist together with the exact bytes it was read from. */
export interface NetList {
  conf: NetConfList
  bytes: Buffer
}

/**
 * The libcni equivalent: runs a network's plugin chain for one attachment.
 * Plugins of an embedded type run in-process; every other type is exec'd
 * from CNI_PATH by the CNI protocol (mode `exec` execs them all).
 *
 * Each ADD, DEL and GC chain has one explicit firewall transaction per
 * backend its plugins use (FirewallTx, kernel/netfilter/firewall.ts;
 * ChainFirewalls, firewalls.ts), each embedded plugin getting the one of its
 * backend in its request: the plugins state their firewall needs on it, and
 * the runtime commits them once, after the whole chain: with the iptables
 * backend, one lock, one iptables-save and one iptables-restore per family
 * for bridge masquerade + portmap + firewall. An ADD chain that fails
 * midway has applied no rule at all; a DEL chain applies what its plugins
 * recorded, even when one of them failed (every plugin gets its DEL).
 */
export class CniRuntime {
  readonly mode: CniMode
  constructor(private readonly opts: RuntimeOptions) {
    this.mode = opts.mode ?? 'embedded'
  }

  // ---- one embedded plugin, exec'd by another runtime ------------------

  /**
   * Runs one embedded plugin the way an exec'd CNI plugin runs (the entry
   * point `ctrnet cni plugin` that another runtime, containerd's or nerdctl's
   * libcni, execs for a type ctrnet implements): `stdin` is the plugin's whole
   * netconf as that runtime built it (prevResult in its version), `rt` its
   * CNI_* environment. Validated like a chain; the plugin's firewall
   * transaction is committed when it succeeded. No cache or journal: the
   * calling runtime keeps its own. Returns the result in stdin's version.
   */
  async runAsPlugin(command: 'ADD' | 'DEL' | 'CHECK', stdin: PluginNetConf, given: RuntimeConf): Promise<CniResult | undefined> {
    const embedded = typeof stdin?.type === 'string' ? embeddedPlugin(stdin.type) : undefined
    if (!embedded) throw new CniError(CNI_ERR.INVALID_NETCONF, `ctrnet does not implement the plugin type ${JSON.stringify(stdin?.type)}`)
    const {name, cniVersion, prevResult, ...entry} = stdin
    const conf: NetConfList = {cniVersion, name, plugins: [entry as PluginConf]}
    this.checkNames(conf, given)
    const caps = validate.request(conf, given)
    const rt = caps === undefined ? given : {...given, capabilityArgs: caps}
    // the stdin as the calling runtime built it (its runtimeConfig), parsed once
    const parsed = parsePlugin({...entry, name, cniVersion} as PluginNetConf, 'plugins[0]', parseContext(command, rt), true)
    if (command !== 'DEL') requireProgramsOf([parsed], conf.name)
    const refused = command === 'ADD' ? firstParseError([parsed]) : undefined
    if (refused) throw refused.error
    const plugin: PluginNetConf = prevResult ? {...stdin, prevResult: toInternalResult(prevResult)} : stdin
    const nf = command === 'CHECK' ? closedFirewalls() : this.firewalls()
    try {
      const res = await this.run(command, parsed, plugin, rt, nf)
      if (command !== 'CHECK') await nf.commit()
      return res ? resultAsVersion(res, cniVersion) : undefined
    } finally {
      nf.release()
    }
  }

  // ---- ADD -------------------------------------------------------------

  /** hooks.journaled: called once the journal entry is written (or not at all when the ADD fails before it). */
  async addNetworkList(net: NetList | LoadedConf, given: RuntimeConf, hooks: {journaled?: () => void} = {}): Promise<CniResult> {
    const {conf} = net
    const {rt, chain} = this.validate('ADD', conf, given)
    this.resolvePlugins(chain)
    requireProgramsOf(chain, conf.name)
    // the refusals of the plugins' own parsers, before the first one does any work
    const refused = firstParseError(chain)
    if (refused) throw wrap(refused.error, `plugin type="${refused.type}" failed (add)`)
    const key = {networkName: conf.name, containerId: rt.containerId, ifName: rt.ifName}
    assertWritableEntry(this.opts.cacheDir, key)
    const entry = this.cacheEntry(net, rt)
    // Journal first: an ADD killed after this point can still be found and undone.
    writePending(this.opts.cacheDir, entry)
    hooks.journaled?.()
    let prev: CniResult | undefined
    let started = 0
    let chainDone = false
    const nf = this.firewalls()
    try {
      try {
        let journaled = ''
        for (const [i, plugin] of conf.plugins.entries()) {
          started++
          prev = (await this.run('ADD', chain[i]!, stdinFor(conf, plugin, prev, rt), rt, nf)) ?? prev
          // Journal the result so far when it changed (normally once, after the
          // main plugin): a DEL after a kill then knows the addresses.
          const now = JSON.stringify(prev)
          if (prev && started < conf.plugins.length && now !== journaled) {
            journaled = now
            writePending(this.opts.cacheDir, {...entry, result: resultAsVersion(prev, conf.cniVersion) as Record<string, unknown>})
          }
        }
        chainDone = true
        await nf.commit()
      } finally {
        nf.release()
      }
      const final = resultAsVersion(prev ?? {cniVersion: conf.cniVersion}, conf.cniVersion)
      writeCachedAttachment(this.opts.cacheDir, {...entry, result: final as Record<string, unknown>})
      removePending(this.opts.cacheDir, key)
      return final
    } catch (err) {
      const undoErrors = await this.undo(conf, chain, started, prev, rt)
      if (undoErrors.length === 0) removePending(this.opts.cacheDir, key)
      const plugin = conf.plugins[started - 1]
      const e = wrap(err, chainDone ? `applying ${nf.label} rules failed (add)` : `plugin type="${plugin?.type}" failed (add)`)
      if (undoErrors.length) e.details = [e.details, `cleanup also failed: ${undoErrors.join('; ')}`].filter(Boolean).join('; ')
      throw e
    }
  }

  /**
   * DELs, in reverse, every plugin an ADD started (the failed one too: its
   * DEL is idempotent). Returns the failures that leave state behind: those
   * of plugins whose ADD had succeeded. The failed plugin's own DEL is best
   * effort (a plugin whose ADD fails must clean up after itself, and one that
   * cannot even parse its config, or hangs, fails its DEL the same way).
   * The DELs share one firewall transaction, committed after the last.
   */
  private async undo(conf: NetConfList, chain: ParsedPlugin[], started: number, prev: CniResult | undefined, rt: RuntimeConf): Promise<string[]> {
    const errors: string[] = []
    const nf = this.firewalls()
    try {
      for (let i = started - 1; i >= 0; i--) {
        try {
          // the configs the ADD parsed
          await this.run('DEL', chain[i]!, stdinFor(conf, conf.plugins[i]!, prev, rt), rt, nf)
        } catch (err) {
          if (i < started - 1) errors.push(`${conf.plugins[i].type}: ${(err as Error).message}`)
        }
      }
      await nf.commit()
    } catch (err) {
      errors.push(`${nf.label}: ${(err as Error).message}`)
    } finally {
      nf.release()
    }
    return errors
  }

  // ---- DEL -------------------------------------------------------------

  /**
   * Runs DEL in reverse order with the cached result as prevResult. The
   * cached config, args and capability args win over what the caller gives
   * (they are what the ADD ran with); a pending journal entry of a killed ADD
   * counts as a cache entry. Every plugin gets its DEL even when one fails;
   * the cache entry goes only when all succeeded, so DEL can be retried.
   */
  async delNetworkList(net: NetList | LoadedConf | undefined, rt: RuntimeConf): Promise<void> {
    const name = net?.conf.name
    if (!name) throw new CniError(CNI_ERR.INVALID_NETCONF, 'missing network name')
    const cached = readAttachment(this.opts.cacheDir, {networkName: name, containerId: rt.containerId, ifName: rt.ifName})
    await this.delWith(net, rt, cached)
  }

  private async delWith(net: NetList | undefined, rt: RuntimeConf, cached: Attachment | undefined): Promise<void> {
    // the cached config when it parses, else the given one
    const conf = cached?.net?.conf ?? net?.conf
    if (!conf) throw new CniError(CNI_ERR.INVALID_NETCONF, 'no configuration for the attachment')
    const {rt: effective, chain} = this.validate('DEL', conf, {
      ...rt,
      // '' is a caller's way to say "no netns": only an absent value falls back to the cache
      netns: rt.netns ?? cached?.netns ?? '',
      args: cached?.cniArgs ?? rt.args,
      capabilityArgs: cached?.capabilityArgs ?? rt.capabilityArgs,
    })
    requireProgramsOf(chain, conf.name)
    let prev: CniResult | undefined
    if (cached?.result && versionAtLeast(conf.cniVersion, '0.4.0')) {
      try {
        prev = toInternalResult(cached.result)
      } catch {
        prev = undefined
      }
    }
    const errors: CniError[] = []
    const nf = this.firewalls()
    try {
      for (let i = conf.plugins.length - 1; i >= 0; i--) {
        try {
          await this.run('DEL', chain[i]!, stdinFor(conf, conf.plugins[i]!, prev, effective), effective, nf)
        } catch (err) {
          errors.push(wrap(err, `plugin type="${conf.plugins[i].type}" failed (delete)`))
        }
      }
      await nf.commit()
    } catch (err) {
      errors.push(wrap(err, `applying ${nf.label} changes failed (delete)`))
    } finally {
      nf.release()
    }
    if (errors.length) throw errors[0]
    const key = {networkName: conf.name, containerId: rt.containerId, ifName: rt.ifName}
    removeCachedAttachment(this.opts.cacheDir, key)
    removePending(this.opts.cacheDir, key)
  }

  // ---- CHECK -----------------------------------------------------------

  async checkNetworkList(net: NetList | LoadedConf, given: RuntimeConf): Promise<void> {
    const {conf} = net
    this.checkNames(conf, given)
    validate.request(conf, given)
    const entry = readAttachment(this.opts.cacheDir, {networkName: conf.name, containerId: given.containerId, ifName: given.ifName})
    // a journal entry (an ADD that did not finish) is not a cached result
    const cached = entry && !entry.pending ? entry : undefined
    // the configs are parsed once, with the args the ADD ran with
    const rt = {...given, args: cached?.cniArgs ?? given.args, capabilityArgs: cached?.capabilityArgs ?? given.capabilityArgs}
    const {rt: effective, chain} = this.validate('CHECK', conf, rt)
    if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
      throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `configuration version "${conf.cniVersion}" does not support the CHECK command`)
    }
    if (conf.disableCheck) return
    requireProgramsOf(chain, conf.name)
    if (!cached?.result) {
      throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `no cached result for network "${conf.name}"`, `container ${rt.containerId} ifname ${rt.ifName} was not added`)
    }
    const prev = toInternalResult(cached.result)
    for (const [i, plugin] of conf.plugins.entries()) {
      try {
        await this.run('CHECK', chain[i]!, stdinFor(conf, plugin, prev, effective), effective, closedFirewalls())
      } catch (err) {
        throw wrap(err, `plugin type="${plugin.type}" failed (check)`)
      }
    }
  }

  // ---- GC --------------------------------------------------------------

  /**
   * CNI 1.1 GC: DELs every cached (or half-added) attachment of the network
   * that is not valid, with its cached config, netns, args and capability
   * args. With no valid list, an attachment is valid while its netns exists.
   * Then plugins get the GC verb: embedded ones always (they can reclaim
   * leases nothing else knows of), exec'd ones when the config is >= 1.1.0.
   */
  async gcNetworkList(net: NetList | LoadedConf, valid?: Array<{containerId: string; ifName: string}>, opts: {dryRun?: boolean} = {}): Promise<GcReport> {
    const {conf} = net
    validateNetworkName(conf.name)
    assertSupportedVersion(conf.cniVersion)
    const report: GcReport = {removed: [], errors: []}
    const isValid = (a: Attachment) =>
      valid ? valid.some((v) => v.containerId === a.containerId && v.ifName === a.ifName) : !!a.netns && existsSync(a.netns)
    const survivors: Array<{containerID: string; ifname: string}> = []
    for (const a of listAttachments(this.opts.cacheDir, {network: conf.name})) {
      if (isValid(a)) {
        survivors.push({containerID: a.containerId, ifname: a.ifName})
        continue
      }
      report.removed.push({containerId: a.containerId, ifName: a.ifName, netns: a.netns, pending: a.pending})
      if (opts.dryRun) continue
      try {
        await this.delWith(net, {containerId: a.containerId, ifName: a.ifName, netns: gcNetns(a.netns)}, a)
      } catch (err) {
        report.errors.push(`failed to delete stale attachment ${a.containerId} ${a.ifName}: ${(err as Error).message}`)
      }
    }
    if (opts.dryRun) return report
    const validAttachments = valid ? valid.map((v) => ({containerID: v.containerId, ifname: v.ifName})) : survivors
    // each plugin's GC gets the transaction of its own backend (a stale attachment's DEL above used its cached config's)
    const nf = this.firewalls()
    try {
      const rt = {containerId: '', netns: '', ifName: ''}
      for (const [i, plugin] of conf.plugins.entries()) {
        const embedded = this.mode === 'embedded' ? embeddedPlugin(plugin.type) : undefined
        if (!embedded && !versionAtLeast(conf.cniVersion, '1.1.0')) continue
        if (embedded && !embedded.gc) continue
        const stdin: PluginNetConf = {...plugin, name: conf.name, cniVersion: conf.cniVersion, 'cni.dev/valid-attachments': validAttachments}
        try {
          await this.run('GC', parsePlugin(stdin, `plugins[${i}]`, parseContext('GC', rt), this.mode === 'embedded'), stdin, rt, nf)
        } catch (err) {
          report.errors.push(`failed to GC plugin ${plugin.type}: ${(err as Error).message}`)
        }
      }
      await nf.commit()
    } catch (err) {
      report.errors.push(`applying ${nf.label} changes failed (gc): ${(err as Error).message}`)
    } finally {
      nf.release()
    }
    return report
  }

  // ---- STATUS ----------------------------------------------------------

  async statusNetworkList(net: NetList | LoadedConf): Promise<void> {
    const {conf} = net
    if (!versionAtLeast(conf.cniVersion, '1.1.0')) return
    const rt = {containerId: '', netns: '', ifName: ''}
    for (const [i, plugin] of conf.plugins.entries()) {
      const embedded = this.mode === 'embedded' ? embeddedPlugin(plugin.type) : undefined
      // an embedded plugin without STATUS is available: its config is not read
      if (embedded && !embedded.status) continue
      const stdin: PluginNetConf = {...plugin, name: conf.name, cniVersion: conf.cniVersion}
      await this.run('STATUS', parsePlugin(stdin, `plugins[${i}]`, parseContext('STATUS', rt), this.mode === 'embedded'), stdin, rt, closedFirewalls())
    }
  }

  // ---- VERSION ---------------------------------------------------------

  /**
   * The spec versions a plugin speaks (the VERSION command): embedded
   * plugins speak every version the runtime converts between; an external
   * one is asked by the CNI protocol.
   */
  async versionInfo(type: string): Promise<{cniVersion: string; supportedVersions: string[]}> {
    if (this.mode === 'embedded' && embeddedPlugin(type)) {
      return {cniVersion: '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS]}
    }
    const path = findInPath(type, this.opts.cniPath)
    const raw = (await execPlugin(
      path,
      JSON.stringify({cniVersion: '1.1.0'}),
      {command: 'VERSION', containerId: '', netns: '', ifName: '', args: [], cniPath: this.opts.cniPath},
      this.opts.execTimeoutMs,
    )) as unknown as {cniVersion?: unknown; supportedVersions?: unknown}
    if (!raw || !Array.isArray(raw.supportedVersions) || !raw.supportedVersions.every((v) => typeof v === 'string')) {
      throw new CniError(CNI_ERR.DECODING_FAILURE, `plugin ${type} gave no version information`)
    }
    return {cniVersion: String(raw.cniVersion ?? ''), supportedVersions: raw.supportedVersions as string[]}
  }

  // ---- plumbing --------------------------------------------------------

  /** The request's names and version, checked before anything is parsed. */
  private checkNames(conf: NetConfList, rt: RuntimeConf): void {
    validateNetworkName(conf.name)
    assertSupportedVersion(conf.cniVersion)
    // a typed runtime conf (conf.ts) holds names our own edge checked
    if (!isTypedRuntimeConf(rt)) {
      validateContainerId(rt.containerId)
      validateIfName(rt.ifName)
    }
    if (!Array.isArray(conf.plugins) || conf.plugins.length === 0) {
      throw new CniError(CNI_ERR.INVALID_NETCONF, `network "${conf.name}" has no plugins`)
    }
  }

  /**
   * Parses the whole request before anything runs (chain.ts): names,
   * CNI_ARGS, capability args and the entry of every plugin, each embedded
   * one by its own parser, once. Returns the runtime conf with the capability
   * args in canonical form and the parsed chain; a refusal that names a
   * field leaves nothing behind.
   */
  private validate(command: CniCommand, conf: NetConfList, rt: RuntimeConf): {rt: RuntimeConf; chain: ParsedPlugin[]} {
    this.checkNames(conf, rt)
    return parseRequest(command, conf, rt, this.mode === 'embedded')
  }

  /**
   * The firewall transactions of one chain (see the class comment), one per
   * backend a plugin gets. A transaction takes the lock only when a plugin
   * records a change on it, so a chain of exec'd plugins (which manage the
   * firewall themselves) costs nothing.
   */
  private firewalls(): ChainFirewalls {
    return new ChainFirewalls({lockPath: this.opts.iptablesLockPath})
  }

  /** Fails before anything runs when a plugin of the chain cannot be found. */
  private resolvePlugins(chain: ParsedPlugin[]): void {
    for (const p of chain) if (!p.plugin) findInPath(p.type, this.opts.cniPath)
  }

  private cacheEntry(net: NetList, rt: RuntimeConf): CacheRecord {
    return {
      kind: 'cniCacheV1',
      containerId: rt.containerId,
      config: net.bytes.toString('base64'),
      ifName: rt.ifName,
      networkName: net.conf.name,
      netns: rt.netns,
      cniArgs: rt.args,
      capabilityArgs: rt.capabilityArgs,
    }
  }

  private request(command: CniCommand, p: ParsedPlugin, stdin: PluginNetConf, rt: Invocation, nf: ChainFirewalls): PluginRequest {
    const args = rt.args ?? []
    return {
      command,
      containerId: rt.containerId,
      netns: rt.netns,
      ifName: rt.ifName,
      cniArgs: args.map(([k, v]) => `${k}=${v}`).join(';'),
      args,
      cniPath: this.opts.cniPath,
      config: stdin,
      // the IPAM plugin gets the main plugin's netconf unchanged, as ipam.ExecAdd does
      invokeIpam: (cmd) => (p.ipam ? this.run(cmd, p.ipam, stdin, rt, nf) : Promise.reject(new CniError(CNI_ERR.INVALID_NETCONF, 'no IPAM type in config'))),
      // a delegate's plugins that follow the network follow its caller's backend
      invokeDelegate: async (cmd, conf) => this.run(cmd, parsePlugin(conf, `${p.at}.delegate`, parseContext(cmd, rt), this.mode === 'embedded', p.backend), conf, rt, nf),
      // the transaction of the plugin's own backend, opened when first asked for
      get firewall() {
        return nf.tx(p.backend)
      },
    }
  }

  /**
   * Runs one plugin with its parsed config: in-process for an embedded type,
   * else exec'd from CNI_PATH by the CNI protocol with `stdin`.
   */
  private async run(command: CniCommand, p: ParsedPlugin, stdin: PluginNetConf, rt: Invocation, nf: ChainFirewalls): Promise<CniResult | undefined> {
    const embedded = p.plugin
    if (!embedded) {
      const path = findInPath(p.type, this.opts.cniPath)
      const wire = stdin.prevResult ? {...stdin, prevResult: resultAsVersion(stdin.prevResult, stdin.cniVersion)} : stdin
      return execPlugin(
        path,
        JSON.stringify(wire),
        {command, containerId: rt.containerId, netns: rt.netns, ifName: rt.ifName, args: rt.args ?? [], cniPath: this.opts.cniPath},
        this.opts.execTimeoutMs,
      )
    }
    try {
      if (p.error !== undefined) throw p.error
      const req = this.request(command, p, stdin, rt, nf)
      switch (command) {
        case 'ADD':
          return await embedded.add(req, p.conf)
        case 'DEL':
          await embedded.del(req, p.conf)
          return undefined
        case 'CHECK':
          await embedded.check(req, p.conf)
          return undefined
        case 'GC':
          await embedded.gc?.(req, p.conf)
          return undefined
        case 'STATUS':
          await embedded.status?.(req, p.conf)
          return undefined
        default:
          throw new CniError(CNI_ERR.INVALID_ENV, `unknown command ${command}`)
      }
    } catch (err) {
      throw wrap(err)
    }
  }
}

/** The CNI_* values of one invocation. */
type Invocation = Pick<RuntimeConf, 'containerId' | 'netns' | 'ifName' | 'args'>

/**
 * Transactions that take no plans, for the invocations that only read
 * (CHECK, STATUS): a change on one throws.
 */
function closedFirewalls(): ChainFirewalls {
  return new ChainFirewalls({closed: true})
}

/** Refuses, before anything runs, a cache or journal entry that is a symlink (it would be written through). */
function assertWritableEntry(cacheDir: string, k: AttachmentKey): void {
  for (const p of entryPaths(cacheDir, k)) {
    try {
      if (lstatSync(p).isSymbolicLink()) throw new CniError(CNI_ERR.IO_FAILURE, `refusing to write the CNI cache through a symlink`, p)
    } catch (err) {
      if (err instanceof CniError) throw err
    }
  }
}

/**
 * The netns a GC DEL may enter. A task's `/proc/<pid>/ns/net` outlives
 * nothing: once the task is gone its pid can be reused by any process, even
 * one in the host's netns, where a DEL would delete that process's
 * interface. Such paths are therefore not entered (the netns died with its
 * task; addresses and rules are released without it). Named netns paths
 * (bind mounts) stay valid and are used.
 */
export function gcNetns(netns: string | undefined): string {
  if (!netns || isProcNetnsPath(netns)) return ''
  return netns
}

/** Makes any error a CniError, prefixing context as libcni does. */
function wrap(err: unknown, context?: string): CniError & {details: string} {
  const e = err instanceof CniError ? err : new CniError(CNI_ERR.INTERNAL, (err as Error)?.message ?? String(err))
  const msg = context ? `${context}: ${e.msg}` : e.msg
  const out = new CniError(e.code, msg, e.details) as CniError & {details: string}
  return out
}
