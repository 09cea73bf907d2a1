import {readdirSync, readFileSync, statSync} from 'node:fs'
import {extname, join} from 'node:path'
import type {NetConfList, PluginConf} from '../plugins/types.js'

/** Largest config file we read; anything bigger is hostile or broken. */
export const MAX_CONF_BYTES = 1 << 20

export const CONF_EXTENSIONS = ['.conf', '.conflist', '.json']

/** A config file found in the config dir, parsed into a conflist. */
export interface LoadedConf {
  file: string
  /** The exact bytes on disk (libcni caches them, base64, in the result cache). */
  bytes: Buffer
  conf: NetConfList
}

/**
 * The config files visible to a containerd namespace: `.conf`, `.conflist`,
 * `.json` directly in dir, then those in dir/<namespace>. Each group in
 * lexical order, as nerdctl lists them.
 */
export function listConfFiles(dir: string, namespace?: string): string[] {
  const out: string[] = []
  const dirs = namespace ? [dir, join(dir, namespace)] : [dir]
  for (const d of dirs) {
    let names: string[]
    try {
      names = readdirSync(d)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    for (const n of names.sort()) {
      if (n.startsWith('.') || !CONF_EXTENSIONS.includes(extname(n))) continue
      const p = join(d, n)
      try {
        if (!statSync(p).isFile()) continue
      } catch {
        continue
      }
      out.push(p)
    }
  }
  return out
}

/**
 * Reads one config file. A `.conf`/`.json` holding a single plugin config is
 * turned into a one-plugin list, as libcni's ConfListFromConf does.
 */
export function loadConfFile(file: string): LoadedConf {
  const st = statSync(file)
  if (st.size > MAX_CONF_BYTES) throw new Error(`${file}: file is larger than ${MAX_CONF_BYTES} bytes`)
  const bytes = readFileSync(file)
  let raw: unknown
  try {
    raw = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new Error(`${file}: invalid JSON: ${(err as Error).message}`)
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: not a JSON object`)
  const obj = raw as Record<string, unknown>
  let conf: NetConfList
  if (Array.isArray(obj.plugins)) {
    conf = obj as NetConfList
  } else if (extname(file) !== '.conflist' && typeof obj.type === 'string') {
    const {name, cniVersion, ...plugin} = obj
    conf = {cniVersion: String(cniVersion ?? ''), name: String(name ?? ''), plugins: [{...plugin, type: obj.type} as PluginConf]}
  } else {
    throw new Error(`${file}: no plugins list`)
  }
  if (typeof conf.name !== 'string' || conf.name === '') throw new Error(`${file}: no network name`)
  if (!conf.plugins.every((p) => p && typeof p === 'object' && typeof p.type === 'string')) {
    throw new Error(`${file}: every plugin needs a type`)
  }
  return {file, bytes, conf}
}

/**
 * Finds a network by name the way libcni does: `.conflist` files first, then
 * `.conf`/`.json`, each in lexical order, in dir and its namespace subfolder.
 * Unreadable files are skipped (reported through onSkip).
 */
export function findNetworkConf(
  dir: string,
  namespace: string | undefined,
  name: string,
  onSkip?: (file: string, err: Error) => void,
): LoadedConf | undefined {
  const files = listConfFiles(dir, namespace)
  const ordered = [...files.filter((f) => extname(f) === '.conflist'), ...files.filter((f) => extname(f) !== '.conflist')]
  for (const f of ordered) {
    try {
      const loaded = loadConfFile(f)
      if (loaded.conf.name === name) return loaded
    } catch (err) {
      onSkip?.(f, err as Error)
    }
  }
  return undefined
}
