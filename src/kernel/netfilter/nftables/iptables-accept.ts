/**
 * The nftables backend under an iptables FORWARD policy DROP. An accept in
 * table inet ctrnet is not final: iptables(-nft or legacy)'s filter FORWARD
 * still drops the packet when its policy is DROP (Docker's, or an admin's).
 * So every accept of inet ctrnet's forward chain sets FWD_ACCEPT_MARK, and
 * where the iptables programs exist ONE generic rule per family, appended
 * to iptables' filter FORWARD, accepts what carries it:
 *
 *   -A FORWARD -m mark --mark 0x10000000/0x10000000 -m comment --comment "ctrnet: accepted in nftables table inet ctrnet" -j ACCEPT
 *
 * written with iptables/ip6tables (never nft: iptables-nft would call a table
 * nft touched incompatible). The policy is never changed. The rule is
 * installed whatever the policy (a policy can turn DROP later, e.g. when
 * Docker starts); under policy ACCEPT it changes nothing.
 *
 * Cost: a commit that adds to inet ctrnet checks a state file (stat, no
 * process): `<lock dir>/nftables-iptables-accept.<netns inode>`, written once
 * the rules were checked or installed. While it is younger than STATE_TTL_MS
 * nothing runs. Otherwise, under the backend's lock: one `iptables -w 5 -C` per
 * family, one `-A` per missing rule, then the file is written again. So an
 * ADD costs no process in the steady state, and at most 1 + 2 (+2) processes
 * per STATE_TTL_MS; a FORWARD flushed by someone else is repaired by the
 * first ADD after the TTL.
 *
 * Removal: when removeBridge leaves inet ctrnet with no container and no
 * bridge element (backend.ts), `-D` per family until none is left, and the
 * state file goes. removeBridge deletes the state file before it lists the
 * table, and an ADD looks at the file after its own script applied, so an
 * ADD that races a removal either is seen by the listing (the rules stay) or
 * finds no file and re-installs under the lock.
 */
import {existsSync, mkdirSync, statSync, unlinkSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {haveProgram, run} from '../../../sys/exec.js'
import {FWD_ACCEPT_MARK} from './forwarding.js'
import {nftStats, takeNftLock} from './io.js'

/** The comment of the generic rule. */
export const IPTABLES_ACCEPT_COMMENT = 'ctrnet: accepted in nftables table inet ctrnet'
/** How long an installed or checked rule is trusted without a look (ms). */
export const STATE_TTL_MS = 60_000

const hex = `0x${FWD_ACCEPT_MARK.toString(16)}`
/** The rule's arguments after the chain name. */
export const IPTABLES_ACCEPT_RULE: readonly string[] = ['-m', 'mark', '--mark', `${hex}/${hex}`, '-m', 'comment', '--comment', IPTABLES_ACCEPT_COMMENT, '-j', 'ACCEPT']

/** The iptables programs of the host, per family: those installed. */
function programs(): Array<{bin: string; v6: boolean}> {
  return [
    {bin: 'iptables', v6: false},
    {bin: 'ip6tables', v6: true},
  ].filter((p) => haveProgram(p.bin))
}

/** The state file, next to the lock, one per network namespace (the inode of /proc/self/ns/net). */
export function acceptStatePath(lockPath: string): string {
  let ns = 'host'
  try {
    ns = String(statSync('/proc/self/ns/net').ino)
  } catch {
    /* no /proc: one file */
  }
  return join(dirname(lockPath), `nftables-iptables-accept.${ns}`)
}

function fresh(path: string): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < STATE_TTL_MS
  } catch {
    return false
  }
}

async function ipt(bin: string, op: '-C' | '-A' | '-D'): Promise<{ok: boolean; stderr: string}> {
  nftStats.spawns++
  nftStats.iptables++
  const r = await run(bin, ['-w', '5', op, 'FORWARD', ...IPTABLES_ACCEPT_RULE], {allowFailure: true})
  return {ok: r.code === 0, stderr: r.stderr.trim()}
}

/** A host without IPv6 has no ip6tables filter table to speak of. */
const noIpv6 = () => !existsSync('/proc/net/if_inet6')

/** Makes sure the generic rule exists in each family's FORWARD (see above); cheap when the state file is fresh. */
export async function ensureIptablesAccept(lockPath: string): Promise<void> {
  const state = acceptStatePath(lockPath)
  if (fresh(state)) return
  const bins = programs()
  if (bins.length === 0) return
  const lock = await takeNftLock(lockPath)
  try {
    if (fresh(state)) return
    for (const p of bins) {
      if ((await ipt(p.bin, '-C')).ok) continue
      const r = await ipt(p.bin, '-A')
      if (!r.ok && !(p.v6 && noIpv6())) {
        throw new Error(`nftables: cannot accept the packets marked ${hex} in ${p.bin} FORWARD : ${r.stderr || 'failed'}`)
      }
    }
    mkdirSync(dirname(state), {recursive: true})
    writeFileSync(state, `${new Date().toISOString()}\n`, {mode: 0o600})
  } finally {
    lock.release()
  }
}

/** Forgets that the rules were installed: the next ADD looks again (removeBridge, before it lists). */
export function forgetIptablesAccept(lockPath: string): void {
  try {
    unlinkSync(acceptStatePath(lockPath))
  } catch {
    /* not there */
  }
}

/** Removes the generic rule from each family's FORWARD (every copy); the caller holds the lock. */
export async function removeIptablesAccept(lockPath: string): Promise<void> {
  forgetIptablesAccept(lockPath)
  for (const p of programs()) {
    for (let i = 0; i < 16 && (await ipt(p.bin, '-D')).ok; i++);
  }
}
