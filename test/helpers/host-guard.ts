/**
 * The host guard's parts (used by test/global-setup.ts): snapshots of the host
 * state the tests must never touch, and the comparison that decides whether a
 * run changed it. A snapshot that cannot be taken fails loudly: an empty
 * snapshot would compare equal to another empty one and hide every change.
 */
import {execFileSync} from 'node:child_process'
import {existsSync, lstatSync, readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {join} from 'node:path'

export type Snapshot = Record<string, string>

/** The host's CNI config and state dirs. */
export const CNI_DIRS = ['/etc/cni', '/var/lib/cni', '/run/cni']

/**
 * Residue the run may leave, exactly: the reference tuning plugin (run by the
 * conformance tests) keeps its backups in a hard-coded /run/cni/tuning, writes
 * them there and removes them on DEL, but leaves the directory. Accepted only
 * while it is empty, together with the parent dirs the run created just to
 * hold it. Anything else new under the CNI dirs, empty or not, is a change.
 */
export const KNOWN_RESIDUE = ['/run/cni/tuning/']

/** Why a snapshot command failed, in one line. */
function whyFailed(file: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException & {status?: number | null; signal?: string | null; stderr?: string | Buffer}
  if (err.code === 'ENOENT') return `${file} is not installed (command not found)`
  const stderr = String(err.stderr ?? '').trim().split('\n')[0] ?? ''
  if (typeof err.status === 'number') return `exit ${err.status}${stderr ? `: ${stderr}` : ''}`
  if (err.signal) return `killed by ${err.signal}`
  return err.message
}

/** Runs a snapshot command; a missing binary, a non-zero exit or a signal throws, naming the command. */
export function mustRun(file: string, args: string[], hint = ''): string {
  try {
    return execFileSync(file, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20})
  } catch (e) {
    throw new Error(`host guard: cannot snapshot host state: ${[file, ...args].join(' ')} : ${whyFailed(file, e)}${hint ? ` (${hint})` : ''}`)
  }
}

/** Every entry under dir (dirs end with "/"), sorted; [] when dir does not exist. */
export function tree(dir: string): string[] {
  if (!existsSync(dir)) return []
  const out: string[] = [`${dir}/`]
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n)
      const st = lstatSync(p, {throwIfNoEntry: false})
      if (!st) out.push(`${p} (vanished while listed)`)
      else if (st.isDirectory()) {
        out.push(`${p}/`)
        walk(p)
      } else if (st.isSymbolicLink()) out.push(`${p} -> ${readlinkSync(p)}`)
      else out.push(`${p} ${st.size} ${st.mtimeMs}`)
    }
  }
  walk(dir)
  return out
}

/** Link names from `ip -o link show` output, sorted. */
export function linkNames(ipLinkOutput: string): string[] {
  return ipLinkOutput
    .split('\n')
    .map((l) => l.split(':')[1]?.trim() ?? '')
    .filter(Boolean)
    .sort()
}

/** The rules and user chains of iptables-save / ip6tables-save output (not the built-in chains' counters). */
export function iptablesRules(save: string): string {
  return save
    .split('\n')
    .filter((l) => l.startsWith('-A') || (l.startsWith(':') && !/^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) /.test(l)))
    .join('\n')
}

function readSysctl(key: string): string {
  return readFileSync(`/proc/sys/${key}`, 'utf8').trim()
}

/**
 * The host sysctls the runtime (and the reference plugins) write in the
 * namespace they run in: ip_forward and all/forwarding (bridge with a
 * gateway), accept_ra of the bridge and host veths (bridge), route_localnet
 * of the interface towards the container (portmap), and br_netfilter's
 * bridge-nf-call-* when that module is loaded. Per-interface keys are read
 * for every interface the host has. A global key that cannot be read throws.
 */
export function hostSysctls(): string {
  const out: string[] = []
  const v6 = existsSync('/proc/sys/net/ipv6')
  if (!v6) out.push('net/ipv6: (IPv6 disabled)')
  for (const key of ['net/ipv4/ip_forward', ...(v6 ? ['net/ipv6/conf/all/forwarding', 'net/ipv6/conf/default/forwarding'] : [])]) {
    try {
      out.push(`${key}=${readSysctl(key)}`)
    } catch (e) {
      throw new Error(`host guard: cannot snapshot host state: read /proc/sys/${key} : ${(e as Error).message}`)
    }
  }
  const perIf = (fam: string, name: string) => {
    const base = `/proc/sys/net/${fam}/conf`
    if (!existsSync(base)) return
    for (const ifc of readdirSync(base).sort()) {
      const key = `net/${fam}/conf/${ifc}/${name}`
      let v: string
      try {
        v = readSysctl(key)
      } catch (e) {
        // an interface removed while we read: the link list shows it if it matters
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`host guard: cannot snapshot host state: read /proc/sys/${key} : ${(e as Error).message}`)
        v = '(gone)'
      }
      out.push(`${key}=${v}`)
    }
  }
  perIf('ipv4', 'route_localnet')
  perIf('ipv6', 'accept_ra')
  perIf('ipv6', 'forwarding')
  const br = '/proc/sys/net/bridge'
  if (existsSync(br)) for (const f of readdirSync(br).sort()) out.push(`net/bridge/${f}=${readSysctl(`net/bridge/${f}`)}`)
  else out.push('net/bridge: (br_netfilter not loaded)')
  return out.join('\n')
}

/** The whole snapshot. Throws when any part cannot be taken. */
export function snapshot(): Snapshot {
  return {
    ...Object.fromEntries(CNI_DIRS.map((d) => [d, tree(d).join('\n')])),
    'host links': linkNames(mustRun('ip', ['-o', 'link', 'show'])).join('\n'),
    'host iptables': iptablesRules(mustRun('iptables-save', [])),
    'host ip6tables': iptablesRules(mustRun('ip6tables-save', [])),
    // -s: without counters and other state that moves with traffic
    'host nft ruleset': mustRun('nft', ['-s', 'list', 'ruleset'], 'scripts/test-setup.sh installs package nftables'),
    'host sysctls': hostSysctls(),
    'network namespaces': mustRun('ip', ['netns', 'list']),
  }
}

function lines(s: string): string[] {
  return s === '' ? [] : s.split('\n')
}

/**
 * Compares one CNI dir's listings. New entries are accepted only when they are
 * a known residue dir that is empty, or a dir the run created that holds
 * nothing but accepted residue. Returns the changes and the accepted residue
 * (new dirs only, deepest first, which the caller may remove afterwards).
 */
export function compareTree(before: string[], after: string[], known: string[] = KNOWN_RESIDUE): {changes: string[]; residue: string[]} {
  const b = new Set(before)
  const a = new Set(after)
  const added = after.filter((l) => !b.has(l))
  const under = (dir: string) => after.filter((l) => l !== dir && l.startsWith(dir))
  const ok = new Set<string>()
  for (const k of known) if (a.has(k) && under(k).length === 0) ok.add(k)
  // new dirs holding only accepted residue, deepest first so parents see their children decided
  const newDirs = added.filter((l) => l.endsWith('/')).sort((x, y) => y.length - x.length)
  for (const d of newDirs) {
    const inside = under(d)
    if (inside.length > 0 && inside.every((l) => ok.has(l))) ok.add(d)
  }
  const changes = [...before.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...added.filter((l) => !ok.has(l)).map((l) => `+ ${l}`)]
  return {changes, residue: newDirs.filter((d) => ok.has(d))}
}

/** Every difference between two snapshots, per key, as readable lines; and the accepted residue. */
export function compareSnapshots(before: Snapshot, after: Snapshot): {changes: string[]; residue: string[]} {
  const changes: string[] = []
  const residue: string[] = []
  for (const k of [...new Set([...Object.keys(before), ...Object.keys(after)])]) {
    const bl = lines(before[k] ?? '')
    const al = lines(after[k] ?? '')
    if (CNI_DIRS.includes(k)) {
      const r = compareTree(bl, al)
      if (r.changes.length) changes.push(`${k}:\n  ${r.changes.slice(0, 40).join('\n  ')}`)
      residue.push(...r.residue)
    } else if (before[k] !== after[k]) {
      const b = new Set(bl)
      const a = new Set(al)
      const diff = [...bl.filter((l) => !a.has(l)).map((l) => `- ${l}`), ...al.filter((l) => !b.has(l)).map((l) => `+ ${l}`)]
      // same lines in another order
      const shown = diff.length ? diff : [`- ${before[k] ?? '(nothing)'}`, `+ ${after[k] ?? '(nothing)'}`]
      changes.push(`${k}:\n  ${shown.slice(0, 40).join('\n  ')}`)
    }
  }
  return {changes, residue}
}
