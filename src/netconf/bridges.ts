import {mkdirSync, readFileSync, readdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {MAX_CONF_BYTES, listConfFiles, loadConfFile} from '../libcni/loader.js'
import type {NetConfList} from '../plugins/types.js'
import {linkExists} from '../kernel/ip/link.js'
import {writeFileAtomic} from '../sys/atomic.js'
import {CtrnetError} from '../sys/errors.js'

/**
 * Bridge links are host-wide and shared by name: a conflist of containerd
 * (10-containerd-net, "bridge": "cni0"), of nerdctl, or written by hand may
 * name the same device as ours. These helpers answer "who else names this
 * bridge?" and "did ctrnet/nerdctl create this bridge for this network?", so
 * that `network create` never claims a bridge another config uses and
 * `network rm`/`prune` never delete a link they do not own.
 *
 * Ownership of a bridge chosen with `-o com.docker.network.bridge.name=X` is
 * recorded outside the conflist (which stays byte-identical to nerdctl's):
 * `<dir>/.ctrnet/owned-bridges/<network-id>-<bridge>`, a small JSON file
 * written atomically under the store lock when create finds no link X.
 * Dot-entries are never read as configs or namespaces, so nerdctl, libcni and
 * containerd ignore it.
 */

export const OWNED_BRIDGES_DIR = join('.ctrnet', 'owned-bridges')

/** The bridge plugin's default device when a config names none. */
export const CNI_DEFAULT_BRIDGE = 'cni0'

export interface BridgeUser {
  /** Network name, or "" when the file could not be parsed */
  name: string
  file: string
}

/** Device names the bridge plugins of a conflist use (every bridge plugin, not only the first). */
export function bridgeNamesOf(conf: NetConfList): string[] {
  const out: string[] = []
  for (const p of conf.plugins ?? []) {
    if (p?.type !== 'bridge') continue
    out.push(typeof p.bridge === 'string' && p.bridge ? p.bridge : CNI_DEFAULT_BRIDGE)
  }
  return out
}

/**
 * Every config file in dir and in each of its (non-dot) subfolders: every
 * containerd namespace, not only the one the loader reads for this command,
 * because a bridge is shared by the whole host.
 */
export function allConfFiles(dir: string): string[] {
  const files = listConfFiles(dir)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return files
  }
  for (const n of names.sort()) {
    if (n.startsWith('.')) continue
    const sub = join(dir, n)
    try {
      if (!statSync(sub).isDirectory()) continue
      files.push(...listConfFiles(sub))
    } catch {
      continue
    }
  }
  return files
}

/**
 * The config files (other than `except`) whose bridge plugin names `dev`. A
 * file that cannot be parsed counts when its bytes hold the quoted name: we
 * cannot prove it does not use the bridge, so we assume it does.
 */
export function bridgeUsers(dir: string, dev: string, except?: string): BridgeUser[] {
  const out: BridgeUser[] = []
  for (const file of allConfFiles(dir)) {
    if (file === except) continue
    try {
      const {conf} = loadConfFile(file)
      if (bridgeNamesOf(conf).includes(dev)) out.push({name: conf.name, file})
    } catch {
      try {
        if (statSync(file).size > MAX_CONF_BYTES) continue
        if (readFileSync(file, 'utf8').includes(JSON.stringify(dev))) out.push({name: '', file})
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return out
}

export function describeUser(u: BridgeUser): string {
  return u.name ? `network ${JSON.stringify(u.name)} (${u.file})` : `the unreadable config ${u.file}`
}

/**
 * The record's path, or undefined when id or dev could leave the folder (both
 * may come from a hand-written conflist): id must be plain hex/alphanumerics,
 * dev a plain interface name.
 */
function recordPath(dir: string, id: string, dev: string): string | undefined {
  if (!/^[A-Za-z0-9]{1,128}$/.test(id) || !/^[A-Za-z0-9_.@+-]{1,15}$/.test(dev) || dev === '.' || dev === '..') return undefined
  return join(dir, OWNED_BRIDGES_DIR, `${id}-${dev}`)
}

interface OwnedRecord {
  network: string
  bridge: string
  file: string
}

/** Records that ctrnet creates `dev` for the network in `file`. Call under the store lock. */
export function recordOwnedBridge(dir: string, id: string, network: string, dev: string, file: string): void {
  const p = recordPath(dir, id, dev)
  if (!p) throw new Error(`unsafe record name for bridge ${JSON.stringify(dev)}`)
  mkdirSync(join(dir, OWNED_BRIDGES_DIR), {recursive: true, mode: 0o755})
  const rec: OwnedRecord = {network, bridge: dev, file}
  writeFileAtomic(p, JSON.stringify(rec) + '\n', 0o644)
}

/** Forgets a record (stale or done with). Call under the store lock. */
export function forgetOwnedBridge(dir: string, id: string, dev: string): void {
  const p = recordPath(dir, id, dev)
  if (!p) return
  try {
    rmSync(p, {force: true})
  } catch {
    /* best effort: a record without its conflist never matches (file check) */
  }
}

/** True when a record says ctrnet created `dev` for the network whose conflist is `file`. */
export function isRecordedOwner(dir: string, id: string, dev: string, file: string): boolean {
  const p = recordPath(dir, id, dev)
  if (!p) return false
  try {
    const rec = JSON.parse(readFileSync(p, 'utf8')) as Partial<OwnedRecord>
    return rec?.bridge === dev && rec?.file === file
  } catch {
    return false
  }
}

/**
 * Whether ctrnet or nerdctl created `dev` for this network: nerdctl's own
 * names (`br-<first 12 of nerdctlID>`, `nerdctl0` for the default network
 * `bridge`) or a name recorded by ctrnet's create.
 */
export function ownsBridge(dir: string, net: {name: string; file: string; nerdctlID?: string}, dev: string): boolean {
  if (net.nerdctlID && dev === `br-${net.nerdctlID.slice(0, 12)}`) return true
  if (net.name === 'bridge' && dev === 'nerdctl0') return true
  return !!net.nerdctlID && isRecordedOwner(dir, net.nerdctlID, dev, net.file)
}

export interface BridgeClaim {
  /** One-line warnings for the user */
  warnings: string[]
  /** Call after the conflist is written: records or forgets ownership; returns warnings. Never throws. */
  commit: () => string[]
}

/**
 * The bridge side of `network create` (under the store lock, before the
 * write): refuses a device another config names (in any namespace folder),
 * except the nerdctl-derived br-<id> of the same network name in another
 * namespace, which nerdctl itself shares; warns when the link already exists
 * with no config naming it (the network will share it, and rm will leave it);
 * otherwise, for a name chosen with -o com.docker.network.bridge.name,
 * records after the write that ctrnet creates it for this network.
 */
export function claimBridge(
  dir: string,
  what: string,
  net: {name: string; id: string; conf: NetConfList; file: string; explicitName: boolean},
): BridgeClaim {
  const warnings: string[] = []
  const toRecord: string[] = []
  const toForget: string[] = []
  for (const dev of new Set(bridgeNamesOf(net.conf))) {
    const derived = dev === `br-${net.id.slice(0, 12)}`
    const others = bridgeUsers(dir, dev, net.file).filter((u) => !(derived && u.name === net.name))
    if (others.length > 0) {
      throw new CtrnetError(what, `bridge ${JSON.stringify(dev)} is already used by ${describeUser(others[0]!)}`)
    }
    if (linkExists(dev)) {
      const tail = derived ? '' : ' and network rm will leave it'
      warnings.push(
        `network ${JSON.stringify(net.name)}: bridge ${JSON.stringify(dev)} already exists on this host and no network config names it; the network will share it${tail}`,
      )
      toForget.push(dev)
    } else if (net.explicitName && !derived) {
      toRecord.push(dev)
    }
  }
  return {
    warnings,
    commit: () => {
      const out: string[] = []
      for (const dev of toForget) forgetOwnedBridge(dir, net.id, dev)
      for (const dev of toRecord) {
        try {
          recordOwnedBridge(dir, net.id, net.name, dev, net.file)
        } catch (err) {
          out.push(`network ${JSON.stringify(net.name)}: cannot record that ctrnet owns bridge ${JSON.stringify(dev)} (${(err as Error).message}); network rm will leave it`)
        }
      }
      return out
    },
  }
}
