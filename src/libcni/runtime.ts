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
import {NetfilterTx} from '../kernel/netfilter/iptables.js'
import type {LoadedConf} from './loader.js'
import {isProcNetnsPath} from '../kernel/netns.js'
import {loadEmbedded} from '../plugins/registry.js'
import {programsFor} from '../plugins/programs.js'
import {requirePrograms} from '../sys/exec.js'
import {
  CNI_ERR,
  CniError,
  type CniCommand,
  type CniResult,
  type NetConfList,
  type PluginConf,
  type PluginNetConf,
  type PluginRequest,
} from '../plugins/types.js'
import * as validate from './validate.js'
import {assertSupportedVersion, resultAsVersion, SUPPORTED_VERSIONS, toInternalResult, versionAtLeast} from './version.js'

export type CniMode = 'embedded' | 'exec'

export interface RuntimeOptions {
  cniPath: string[]
  cacheDir: string
  mode?: CniMode
  execTimeoutMs?: number
  /** The flock every ctrnet process takes to change iptables (default: NetfilterTx's). */
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
 * Each ADD, DEL and GC chain has one explicit netfilter transaction
 * (NetfilterTx), handed to every embedded plugin in its request: the plugins
 * record their iptables changes on it, and the runtime commits it once, after
 * the whole chain: one lock, one iptables-save and one iptables-restore per
 * family for bridge masquerade + portmap + firewall. An ADD chain that fails
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
   * CNI_* environment. Validated like a chain; the plugin's netfilter
   * transaction is committed when it succeeded. No cache or journal: the
   * calling runtime keeps its own. Returns the result in stdin's version.
   */
  async runAsPlugin(command: 'ADD' | 'DEL' | 'CHECK', stdin: PluginNetConf, given: RuntimeConf): Promise<CniResult | undefined> {
    const embedded = typeof stdin?.type === 'string' ? await loadEmbedded(stdin.type) : undefined
    if (!embedded) throw new CniError(CNI_ERR.INVALID_NETCONF, `ctrnet does not implement the plugin type ${JSON.stringify(stdin?.type)}`)
    const {name, cniVersion, prevResult, ...entry} = stdin
    const conf: NetConfList = {cniVersion, name, plugins: [entry as PluginConf]}
    const rt = await this.validate(conf, given)
    if (command !== 'DEL') await this.requireProgramsOf(conf)
    const plugin: PluginNetConf = prevResult ? {...stdin, prevResult: toInternalResult(prevResult)} : stdin
    if (command === 'ADD') {
      const pre = this.request('ADD', plugin, rt, closedNetfilter())
      await embedded.precheck?.(pre)
    }
    const nf = command === 'CHECK' ? closedNetfilter() : this.netfilter()
    try {
      const res = await this.invokeOne(command, plugin, rt, nf)
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
    const rt = await this.validate(conf, given)
    await this.resolvePlugins(conf)
    await this.requireProgramsOf(conf)
    await this.precheckPlugins(conf, rt)
    const key = {networkName: conf.name, containerId: rt.containerId, ifName: rt.ifName}
    assertWritableEntry(this.opts.cacheDir, key)
    const entry = this.cacheEntry(net, rt)
    // Journal first: an ADD killed after this point can still be found and undone.
    writePending(this.opts.cacheDir, entry)
    hooks.journaled?.()
    let prev: CniResult | undefined
    let started = 0
    let chainDone = false
    try {
      const nf = this.netfilter()
      try {
        let journaled = ''
        for (const plugin of conf.plugins) {
          started++
          prev = (await this.invoke('ADD', conf, plugin, prev, rt, nf)) ?? prev
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
      const undoErrors = await this.undo(conf, started, prev, rt)
      if (undoErrors.length === 0) removePending(this.opts.cacheDir, key)
      const plugin = conf.plugins[started - 1]
      const e = wrap(err, chainDone ? 'applying iptables rules failed (add)' : `plugin type="${plugin?.type}" failed (add)`)
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
   * The DELs share one netfilter transaction, committed after the last.
   */
  private async undo(conf: NetConfList, started: number, prev: CniResult | undefined, rt: RuntimeConf): Promise<string[]> {
    const errors: string[] = []
    const nf = this.netfilter()
    try {
      for (let i = started - 1; i >= 0; i--) {
        try {
          await this.invoke('DEL', conf, conf.plugins[i], prev, rt, nf)
        } catch (err) {
          if (i < started - 1) errors.push(`${conf.plugins[i].type}: ${(err as Error).message}`)
        }
      }
      await nf.commit()
    } catch (err) {
      errors.push(`iptables: ${(err as Error).message}`)
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
    const effective: RuntimeConf = await this.validate(conf, {
      ...rt,
      // '' is a caller's way to say "no netns": only an absent value falls back to the cache
      netns: rt.netns ?? cached?.netns ?? '',
      args: cached?.cniArgs ?? rt.args,
      capabilityArgs: cached?.capabilityArgs ?? rt.capabilityArgs,
    })
    await this.requireProgramsOf(conf)
    let prev: CniResult | undefined
    if (cached?.result && versionAtLeast(conf.cniVersion, '0.4.0')) {
      try {
        prev = toInternalResult(cached.result)
      } catch {
        prev = undefined
      }
    }
    const errors: CniError[] = []
    const nf = this.netfilter()
    try {
      for (let i = conf.plugins.length - 1; i >= 0; i--) {
        try {
          await this.invoke('DEL', conf, conf.plugins[i], prev, effective, nf)
        } catch (err) {
          errors.push(wrap(err, `plugin type="${conf.plugins[i].type}" failed (delete)`))
        }
      }
      await nf.commit()
    } catch (err) {
      errors.push(wrap(err, 'applying iptables changes failed (delete)'))
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
    const rt = await this.validate(conf, given)
    if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
      throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `configuration version "${conf.cniVersion}" does not support the CHECK command`)
    }
    if (conf.disableCheck) return
    await this.requireProgramsOf(conf)
    const entry = readAttachment(this.opts.cacheDir, {networkName: conf.name, containerId: rt.containerId, ifName: rt.ifName})
    // a journal entry (an ADD that did not finish) is not a cached result
    const cached = entry && !entry.pending ? entry : undefined
    if (!cached?.result) {
      throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `no cached result for network "${conf.name}"`, `container ${rt.containerId} ifname ${rt.ifName} was not added`)
    }
    const prev = toInternalResult(cached.result)
    const effective = await this.validate(conf, {...rt, args: cached.cniArgs ?? rt.args, capabilityArgs: cached.capabilityArgs ?? rt.capabilityArgs})
    for (const plugin of conf.plugins) {
      try {
        await this.invoke('CHECK', conf, plugin, prev, effective, closedNetfilter())
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
    const nf = this.netfilter()
    try {
      for (const plugin of conf.plugins) {
        const embedded = this.mode === 'embedded' ? await loadEmbedded(plugin.type) : undefined
        if (!embedded && !versionAtLeast(conf.cniVersion, '1.1.0')) continue
        if (embedded && !embedded.gc) continue
        const stdin: PluginNetConf = {...plugin, name: conf.name, cniVersion: conf.cniVersion, 'cni.dev/valid-attachments': validAttachments}
        try {
          await this.invokeOne('GC', stdin, {containerId: '', netns: '', ifName: ''}, nf)
        } catch (err) {
          report.errors.push(`failed to GC plugin ${plugin.type}: ${(err as Error).message}`)
        }
      }
      await nf.commit()
    } catch (err) {
      report.errors.push(`applying iptables changes failed (gc): ${(err as Error).message}`)
    } finally {
      nf.release()
    }
    return report
  }

  // ---- STATUS ----------------------------------------------------------

  async statusNetworkList(net: NetList | LoadedConf): Promise<void> {
    const {conf} = net
    if (!versionAtLeast(conf.cniVersion, '1.1.0')) return
    for (const plugin of conf.plugins) {
      await this.invokeOne('STATUS', {...plugin, name: conf.name, cniVersion: conf.cniVersion}, {containerId: '', netns: '', ifName: ''}, closedNetfilter())
    }
  }

  // ---- VERSION ---------------------------------------------------------

  /**
   * The spec versions a plugin speaks (the VERSION command): embedded
   * plugins speak every version the runtime converts between; an external
   * one is asked by the CNI protocol.
   */
  async versionInfo(type: string): Promise<{cniVersion: string; supportedVersions: string[]}> {
    if (this.mode === 'embedded' && (await loadEmbedded(type))) {
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

  /**
   * Parses the whole request before anything runs (validate.ts): names,
   * CNI_ARGS, capability args and the conflist entry of every embedded
   * plugin; of a typed runtime conf (conf.ts), the conflist only. Returns
   * the runtime conf with the capability args in canonical form; a refusal
   * names the field and leaves nothing behind.
   */
  private async validate(conf: NetConfList, rt: RuntimeConf): Promise<RuntimeConf> {
    validateNetworkName(conf.name)
    assertSupportedVersion(conf.cniVersion)
    const typed = isTypedRuntimeConf(rt)
    if (!typed) {
      validateContainerId(rt.containerId)
      validateIfName(rt.ifName)
    }
    if (!Array.isArray(conf.plugins) || conf.plugins.length === 0) {
      throw new CniError(CNI_ERR.INVALID_NETCONF, `network "${conf.name}" has no plugins`)
    }
    const embedded = new Set<string>()
    if (this.mode === 'embedded') for (const p of conf.plugins) if (typeof p?.type === 'string' && (await loadEmbedded(p.type))) embedded.add(p.type)
    const capabilityArgs = validate.request(conf, rt, (t) => embedded.has(t), typed)
    return capabilityArgs === undefined ? rt : {...rt, capabilityArgs}
  }

  /**
   * Runs each embedded plugin's own config parser (ranges that overlap, a
   * requested IP outside every range, a VLAN out of range...) on the stdin it
   * will get, then its embedded IPAM plugin's, before the first plugin of the
   * chain does any work.
   */
  private async precheckPlugins(conf: NetConfList, rt: RuntimeConf): Promise<void> {
    if (this.mode !== 'embedded') return
    for (const plugin of conf.plugins) {
      const embedded = await loadEmbedded(plugin.type)
      if (!embedded) continue
      // then its embedded IPAM plugin's checks, on the main plugin's netconf
      // (what invokeIpam will hand it); an exec'd main plugin execs its own IPAM
      const ipamType = plugin.ipam?.type
      const ipam = typeof ipamType === 'string' && ipamType ? await loadEmbedded(ipamType) : undefined
      if (!embedded.precheck && !ipam?.precheck) continue
      const req = this.request('ADD', this.stdinFor(conf, plugin, undefined, rt), rt, closedNetfilter())
      try {
        await embedded.precheck?.(req)
        await ipam?.precheck?.(req)
      } catch (err) {
        throw wrap(err, `plugin type="${plugin.type}" failed (add)`)
      }
    }
  }

  /**
   * The netfilter transaction of one chain (see the class comment). It takes
   * the lock only when a plugin plans on it, so a chain of exec'd plugins
   * (which manage iptables themselves) costs nothing.
   */
  private netfilter(): NetfilterTx {
    return new NetfilterTx(this.opts.iptablesLockPath)
  }

  /**
   * Fails before anything runs when a program an embedded plugin of the chain
   * needs is not installed (one line naming it and its Debian package), so a
   * missing `nft` or `iptables-restore` never leaves a half-done ADD or DEL.
   */
  private async requireProgramsOf(conf: NetConfList): Promise<void> {
    if (this.mode !== 'embedded') return
    for (const p of conf.plugins) {
      // an exec'd main plugin execs its IPAM plugin itself
      if (!(await loadEmbedded(p.type))) continue
      for (const type of [p.type, p.ipam?.type]) {
        if (typeof type !== 'string' || !(await loadEmbedded(type))) continue
        requirePrograms(programsFor(type, p), `by the ${type} plugin of network "${conf.name}"`)
      }
    }
  }

  /** Fails before anything runs when a plugin of the chain cannot be found. */
  private async resolvePlugins(conf: NetConfList): Promise<void> {
    for (const p of conf.plugins) {
      const embedded = this.mode === 'embedded' ? await loadEmbedded(p.type) : undefined
      if (!embedded) findInPath(p.type, this.opts.cniPath)
    }
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

  /** Builds one plugin's stdin as libcni's buildOneConfig does, then runs it. */
  private async invoke(
    command: CniCommand,
    conf: NetConfList,
    plugin: PluginConf,
    prev: CniResult | undefined,
    rt: RuntimeConf,
    nf: NetfilterTx,
  ): Promise<CniResult | undefined> {
    return this.invokeOne(command, this.stdinFor(conf, plugin, prev, rt), rt, nf)
  }

  private stdinFor(conf: NetConfList, plugin: PluginConf, prev: CniResult | undefined, rt: RuntimeConf): PluginNetConf {
    const stdin: PluginNetConf = {...plugin, name: conf.name, cniVersion: conf.cniVersion}
    if (prev) stdin.prevResult = prev
    const rc: Record<string, unknown> = {}
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
      if (on && rt.capabilityArgs && cap in rt.capabilityArgs) rc[cap] = rt.capabilityArgs[cap]
    }
    if (Object.keys(rc).length > 0) stdin.runtimeConfig = rc
    return stdin
  }

  private request(
    command: CniCommand,
    stdin: PluginNetConf,
    rt: Pick<RuntimeConf, 'containerId' | 'netns' | 'ifName' | 'args'>,
    nf: NetfilterTx,
  ): PluginRequest {
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
      invokeIpam: (cmd, ipamConf) => {
        const type = ipamConf.ipam?.type
        if (!type) return Promise.reject(new CniError(CNI_ERR.INVALID_NETCONF, 'no IPAM type in config'))
        return this.invokeOne(cmd, ipamConf, rt, nf, type)
      },
      invokeDelegate: (cmd, conf) => this.invokeOne(cmd, conf, rt, nf),
      netfilter: nf,
    }
  }

  /**
   * Runs one plugin. `type` picks the plugin; it differs from stdin.type when
   * a main plugin delegates to its IPAM plugin (which gets the main plugin's
   * config unchanged, as ipam.ExecAdd does).
   */
  private async invokeOne(
    command: CniCommand,
    stdin: PluginNetConf,
    rt: Pick<RuntimeConf, 'containerId' | 'netns' | 'ifName' | 'args'>,
    nf: NetfilterTx,
    type = stdin.type,
  ): Promise<CniResult | undefined> {
    const args = rt.args ?? []
    const embedded = this.mode === 'embedded' ? await loadEmbedded(type) : undefined
    if (!embedded) {
      const path = findInPath(type, this.opts.cniPath)
      const wire = stdin.prevResult ? {...stdin, prevResult: resultAsVersion(stdin.prevResult, stdin.cniVersion)} : stdin
      return execPlugin(
        path,
        JSON.stringify(wire),
        {command, containerId: rt.containerId, netns: rt.netns, ifName: rt.ifName, args, cniPath: this.opts.cniPath},
        this.opts.execTimeoutMs,
      )
    }
    const req = this.request(command, stdin, rt, nf)
    try {
      switch (command) {
        case 'ADD':
          return await embedded.add(req)
        case 'DEL':
          await embedded.del(req)
          return undefined
        case 'CHECK':
          await embedded.check(req)
          return undefined
        case 'GC':
          await embedded.gc?.(req)
          return undefined
        case 'STATUS':
          await embedded.status?.(req)
          return undefined
        default:
          throw new CniError(CNI_ERR.INVALID_ENV, `unknown command ${command}`)
      }
    } catch (err) {
      throw wrap(err)
    }
  }
}

/**
 * A transaction that takes no plans, for the invocations that only read
 * (CHECK, STATUS, the ADD's precheck): a plan() on it throws.
 */
function closedNetfilter(): NetfilterTx {
  const nf = new NetfilterTx()
  nf.release()
  return nf
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
