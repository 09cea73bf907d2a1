import {mkdirSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {writeFileAtomic} from '../sys/atomic.js'

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
 */
export interface CachedAttachment {
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
export const resultsDir = (cacheDir: string) => join(cacheDir, 'results')
export const pendingDir = (cacheDir: string) => join(cacheDir, 'ctrnet', 'pending')

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

function serialize(e: CachedAttachment): string {
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

function parse(text: string): CachedAttachment | undefined {
  try {
    const o = JSON.parse(text) as CachedAttachment
    if (o && o.kind === 'cniCacheV1' && typeof o.containerId === 'string' && o.ifName && o.networkName) return o
  } catch {
    /* not ours or corrupt: ignored, like libcni */
  }
  return undefined
}

function writeEntry(dir: string, e: CachedAttachment, fsync = true): void {
  mkdirSync(dir, {recursive: true, mode: 0o700})
  writeFileAtomic(join(dir, entryName(e)), serialize(e), 0o600, {fsync})
}

function readEntry(dir: string, k: AttachmentKey): CachedAttachment | undefined {
  try {
    return parse(readFileSync(join(dir, entryName(k)), 'utf8'))
  } catch {
    return undefined
  }
}

function listEntries(dir: string, network?: string): CachedAttachment[] {
  let names: string[]
  try {
    names = readdirSync(dir).sort()
  } catch {
    return []
  }
  const out: CachedAttachment[] = []
  for (const n of names) {
    if (network && !n.startsWith(`${network}-`)) continue
    let e: CachedAttachment | undefined
    try {
      e = parse(readFileSync(join(dir, n), 'utf8'))
    } catch {
      continue
    }
    if (e && (!network || e.networkName === network) && n === entryName(e)) out.push(e)
  }
  return out
}

export function writeCachedAttachment(cacheDir: string, e: CachedAttachment): void {
  writeEntry(resultsDir(cacheDir), e)
}

export function readCachedAttachment(cacheDir: string, network: string, containerId: string, ifName: string): CachedAttachment | undefined {
  return readEntry(resultsDir(cacheDir), {networkName: network, containerId, ifName})
}

export function removeCachedAttachment(cacheDir: string, k: AttachmentKey): void {
  rmSync(join(resultsDir(cacheDir), entryName(k)), {force: true})
}

export function listCachedAttachments(cacheDir: string, network?: string): CachedAttachment[] {
  return listEntries(resultsDir(cacheDir), network)
}

/**
 * The journal only has to outlive a killed process (a reboot takes the
 * netns and the veths with it), so it is not fsynced.
 */
export function writePending(cacheDir: string, e: CachedAttachment): void {
  writeEntry(pendingDir(cacheDir), e, false)
}

export function readPending(cacheDir: string, k: AttachmentKey): CachedAttachment | undefined {
  return readEntry(pendingDir(cacheDir), k)
}

export function removePending(cacheDir: string, k: AttachmentKey): void {
  rmSync(join(pendingDir(cacheDir), entryName(k)), {force: true})
}

export function listPending(cacheDir: string, network?: string): CachedAttachment[] {
  return listEntries(pendingDir(cacheDir), network)
}
