/**
 * Guards the isolation rule for the whole run: the tests must never touch
 * the host's own CNI config and state, bridges, iptables / ip6tables / nft
 * rules, the sysctls the runtime writes, or network namespaces. Snapshots them
 * before the run; after it, any difference fails the run, naming what changed.
 * A snapshot that cannot be taken (a command missing or failing) fails the
 * run too. The parts live in test/helpers/host-guard.ts.
 */
import {rmdirSync} from 'node:fs'
import {compareSnapshots, snapshot, type Snapshot} from './helpers/host-guard.js'

let before: Snapshot

export function setup(): void {
  before = snapshot()
}

export function teardown(): void {
  // compare first: nothing is removed before the comparison has decided
  const {changes, residue} = compareSnapshots(before, snapshot())
  if (changes.length > 0) throw new Error(`the tests changed host state they must not touch:\n${changes.join('\n')}`)
  // Only now, the exactly-known residue (the reference tuning plugin's empty
  // /run/cni/tuning and the parents the run created for it), deepest first.
  for (const d of residue) {
    try {
      rmdirSync(d)
    } catch {
      // not empty any more (another run is using it) or gone: leave it
    }
  }
}
