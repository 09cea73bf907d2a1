import {mkdirSync, readdirSync, readFileSync, rmSync, watch} from 'node:fs'
import {join} from 'node:path'
import type {NetConfList} from '../plugins/types.js'
import {sweepOrphanTemps, writeFileAtomic} from '../sys/atomic.js'

/**
 * The libcni result cache: `<cacheDir>/results/<net>-<cid>-<ifname>`, a
 * compact JSON object in libcni's field order, dir 0700, file 0600, so that
 * containerd, nerdctl, cnitool and ctrnet read each other's entries.
 *
 * Beside it ctrnet keeps a journal of ADDs in flight
 * (`<cacheDir>/ctrnet/pending/<same name>`, same shape; `result` is the
 * result so far): written before the first plugin runs, updated when a
 * plugin changes the result, removed once the cache entry is written or the
 * failed ADD was undone. An ADD killed half-way can so still be found and
 * DELeted by `cni del` or `gc`, with the addresses it had been given.
 *
 * This module is the one reader of both: readAttachment and listAttachments
 * give decoded entries (Attachment), the journal merged in. CacheRecord is
 * the entry as stored.
 */
export interface CacheRecord {
  kind: 'cniCacheV1'
  containerId: string
  /** base64 of the conflist bytes, as Go encodes []byte */
  config: string
  ifName: string
  networkName: string
  netns?: string
  cniArgs?: Array<[string, string]>
  capabilityArgs?: Record<string, unknown>
  result?: Record<string, unknown>
}

export interface AttachmentKey {
  networkName: string
  containerId: string
  ifName: string
}

const entryName = (k: AttachmentKey) => `${k.networkName}-${k.containerId}-${k.ifName}`
const resultsDir = (cacheDir: string) => join(cacheDir, 'results')
const pendingDir = (cacheDir: string) => join(cacheDir, 'ctrnet', 'pending')

/** The files of one key: its cache entry and its journal entry. */
export function entryPaths(cacheDir: string, k: AttachmentKey): [cache: string, journal: string] {
  return [join(resultsDir(cacheDir), entryName(k)), join(pendingDir(cacheDir), entryName(k))]
}

/** Go marshals maps with sorted keys; do the same so files match byte for byte. */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v as object)
        .sort()
        .map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]),
    )
  }
  return v
}

function serialize(e: CacheRecord): string {
  const o: Record<string, unknown> = {
    kind: 'cniCacheV1',
    containerId: e.containerId,
    config: e.config,
    ifName: e.ifName,
    networkName: e.networkName,
  }
  if (e.netns) o.netns = e.netns
  if (e.cniArgs && e.cniArgs.length > 0) o.cniArgs = e.cniArgs
  if (e.capabilityArgs && Object.keys(e.capabilityArgs).length > 0) o.capabilityArgs = sortKeys(e.capabilityArgs)
  if (e.result) o.result = sortKeys(e.result)
  return JSON.stringify(o)
}

function parse(text: string): CacheRecord | undefined {
  try {
    const o = JSON.parse(text) as CacheRecord
    if (o && o.kind === 'cniCacheV1' && typeof o.containerId === 'string' && o.ifName && o.networkName) return o
  } catch {
    /* not ours or corrupt: ignored, like libcni */
  }
  return undefined
}

function writeEntry(dir: string, e: CacheRecord, fsync = true): void {
  mkdirSync(dir, {recursive: true, mode: 0o700})
  writeFileAtomic(join(dir, entryName(e)), serialize(e), 0o600, {fsync})
}

function readEntry(dir: string, k: AttachmentKey): CacheRecord | undefined {
  try {
    return parse(readFileSync(join(dir, entryName(k)), 'utf8'))
  } catch {
    return undefined
  }
}

function listEntries(dir: string, network?: string): CacheRecord[] {
  let names: string[]
  try {
    names = readdirSync(dir).sort()
  } catch {
    return []
  }
  const out: CacheRecord[] = []
  for (const n of names) {
    if (network && !n.startsWith(`${network}-`)) continue
    let e: CacheRecord | undefined
    try {
      e = parse(readFileSync(join(dir, n), 'utf8'))
    } catch {
      continue
    }
    if (e && (!network || e.networkName === network) && n === entryName(e)) out.push(e)
  }
  return out
}

export function writeCachedAttachment(cacheDir: string, e: CacheRecord): void {
  writeEntry(resultsDir(cacheDir), e)
}

export function removeCachedAttachment(cacheDir: string, k: AttachmentKey): void {
  rmSync(join(resultsDir(cacheDir), entryName(k)), {force: true})
}

/**
 * The journal only has to outlive a killed process (a reboot takes the
 * netns and the veths with it), so it is not fsynced.
 */
export function writePending(cacheDir: string, e: CacheRecord): void {
  writeEntry(pendingDir(cacheDir), e, false)
}

/** Removes the cache's and the journal's temp files of writers that were killed mid-write (sys/atomic.ts). */
export function sweepCacheTemps(cacheDir: string): string[] {
  return [...sweepOrphanTemps(resultsDir(cacheDir)), ...sweepOrphanTemps(pendingDir(cacheDir))]
}

export function removePending(cacheDir: string, k: AttachmentKey): void {
  rmSync(join(pendingDir(cacheDir), entryName(k)), {force: true})
}

// ---- the one reader: decoded entries, cache and journal merged ----------

/** A conflist together with the exact bytes it was read from. */
export interface CachedNet {
  conf: NetConfList
  bytes: Buffer
}

/** One attachment, decoded from a cache entry or, for an ADD in flight, from its journal entry. */
export interface Attachment {
  networkName: string
  containerId: string
  ifName: string
  netns?: string
  cniArgs?: Array<[string, string]>
  capabilityArgs?: Record<string, unknown>
  /** The result (so far, when pending), in the network's CNI version. */
  result?: Record<string, unknown>
  /** The conflist bytes the ADD ran with (empty when the entry has none). */
  configBytes: Buffer
  /** Those bytes parsed, when they are a JSON object; undefined when missing or torn. */
  net?: CachedNet
  /** True for a journal entry: an ADD killed (or still running) before it reached the cache. */
  pending: boolean
}

function decode(r: CacheRecord, pending: boolean): Attachment {
  const configBytes = Buffer.from(typeof r.config === 'string' ? r.config : '', 'base64')
  let net: CachedNet | undefined
  if (configBytes.length > 0) {
    try {
      const conf = JSON.parse(configBytes.toString('utf8')) as NetConfList
      if (conf && typeof conf === 'object') net = {conf, bytes: configBytes}
    } catch {
      /* torn or not JSON: the caller falls back to the network's file */
    }
  }
  const a: Attachment = {networkName: r.networkName, containerId: r.containerId, ifName: r.ifName, configBytes, pending}
  if (r.netns !== undefined) a.netns = r.netns
  if (r.cniArgs !== undefined) a.cniArgs = r.cniArgs
  if (r.capabilityArgs !== undefined) a.capabilityArgs = r.capabilityArgs
  if (r.result !== undefined) a.result = r.result
  if (net) a.net = net
  return a
}

/**
 * Cache entries, then the journal entries of attachments the cache does not
 * hold: one per (network, container id, ifname), and the cache entry wins
 * (it is what a finished ADD left).
 */
function merge(cached: CacheRecord[], pending: CacheRecord[]): Attachment[] {
  const seen = new Set<string>()
  const out: Attachment[] = []
  for (const [records, isPending] of [
    [cached, false],
    [pending, true],
  ] as const) {
    for (const r of records) {
      const k = entryName(r)
      if (seen.has(k)) continue
      seen.add(k)
      out.push(decode(r, isPending))
    }
  }
  return out
}

/** The attachment of one key: its cache entry, else its journal entry. */
export function readAttachment(cacheDir: string, k: AttachmentKey): Attachment | undefined {
  const cached = readEntry(resultsDir(cacheDir), k)
  if (cached) return decode(cached, false)
  const pending = readEntry(pendingDir(cacheDir), k)
  return pending ? decode(pending, true) : undefined
}

/**
 * Every attachment (cached, or half-added and journalled) of a network, or
 * of all networks; only those of one CNI container id when containerId is
 * given. Entries that are not libcni's (or are unreadable) are skipped.
 */
export function listAttachments(cacheDir: string, filter: {network?: string; containerId?: string} = {}): Attachment[] {
  const all = merge(listEntries(resultsDir(cacheDir), filter.network), listEntries(pendingDir(cacheDir), filter.network))
  return filter.containerId === undefined ? all : all.filter((a) => a.containerId === filter.containerId)
}

/**
 * Calls onChange (with no details: read the cache again) whenever a cache
 * entry is written or removed. Makes the results folder first (as an ADD
 * would), so a watch can start before the first attachment. Returns the
 * function that stops watching.
 */
export function watchAttachments(cacheDir: string, onChange: () => void): () => void {
  const dir = resultsDir(cacheDir)
  mkdirSync(dir, {recursive: true, mode: 0o700})
  const w = watch(dir, {persistent: false}, () => onChange())
  w.on('error', () => onChange())
  return () => w.close()
}
