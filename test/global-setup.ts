/**
 * Guards the isolation rule for the whole run: the tests must never touch
 * the host's own CNI config and state, bridges, iptables rules or network
 * namespaces. Snapshots them before the run; after it, any difference fails
 * the run, naming what changed.
 */
import {execFileSync} from 'node:child_process'
import {existsSync, readdirSync, rmdirSync, statSync} from 'node:fs'
import {join} from 'node:path'

function tree(dir: string): string[] {
  if (!existsSync(dir)) return []
  const out: string[] = []
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n)
      const st = statSync(p, {throwIfNoEntry: false})
      if (st?.isDirectory()) {
        out.push(`${p}/`)
        walk(p)
      } else out.push(`${p} ${st?.size ?? '?'} ${st?.mtimeMs ?? '?'}`)
    }
  }
  walk(dir)
  return out
}

function sh(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']})
  } catch {
    return ''
  }
}

function snapshot(): Record<string, string> {
  return {
    ...Object.fromEntries(CNI_DIRS.map((d) => [d, (existsSync(d) ? [`${d}/`, ...tree(d)] : []).join('\n')])),
    'host links': sh('ip', ['-o', 'link', 'show'])
      .split('\n')
      .map((l) => l.split(':')[1]?.trim() ?? '')
      .filter(Boolean)
      .sort()
      .join(' '),
    'host iptables': sh('iptables-save', [])
      .split('\n')
      .filter((l) => l.startsWith('-A') || (l.startsWith(':') && !/^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) /.test(l)))
      .join('\n'),
    'network namespaces': sh('ip', ['netns', 'list']),
  }
}

let before: Record<string, string>
const CNI_DIRS = ['/etc/cni', '/var/lib/cni', '/run/cni']

/**
 * Empty directories the run created under the CNI dirs are its residue, not
 * state: the reference tuning plugin, run by the conformance tests, keeps its
 * backups in a hard-coded /run/cni/tuning (it writes and removes them there);
 * remove such directories (deepest first) before comparing.
 */
function removeEmptyNewDirs(): void {
  const existed = new Set(CNI_DIRS.flatMap((d) => before[d].split('\n')))
  const dirs = CNI_DIRS.flatMap((d) => [...(existsSync(d) ? [`${d}/`] : []), ...tree(d).filter((l) => l.endsWith('/'))])
  for (const d of dirs.sort((a, b) => b.length - a.length)) {
    if (existed.has(d)) continue
    try {
      rmdirSync(d) // fails, and so keeps, a directory that is not empty
    } catch {
      /* not empty: a real change, reported below */
    }
  }
}

export function setup(): void {
  before = snapshot()
}

export function teardown(): void {
  removeEmptyNewDirs()
  const after = snapshot()
  const changed = Object.keys(before).filter((k) => before[k] !== after[k])
  if (changed.length > 0) {
    const detail = changed.map((k) => `${k}:\n  before: ${before[k].slice(0, 400) || '(nothing)'}\n  after:  ${after[k].slice(0, 400) || '(nothing)'}`)
    throw new Error(`the tests changed host state they must not touch:\n${detail.join('\n')}`)
  }
}
