/**
 * The nftables backend of the firewall seam (../firewall.ts): one transaction
 * per CNI chain. The change methods only record; commit() renders everything
 * into ONE script and runs ONE `nft -f -` (both families, all tables: the
 * kernel applies it atomically). What a change needs to know of the tables
 * (the handles of the rules a removal deletes) is listed at commit, under the
 * backend's lock, once per table; a commit of additions only (an ADD) lists
 * nothing and takes no lock: kernel transactions are atomic and additions do
 * not depend on what is there. If nft refuses a script built from a listing
 * (someone, e.g. a reference plugin, deleted a rule meanwhile), the tables are
 * listed again and the script rebuilt (at most twice). The checks read
 * without the lock.
 */
import type {FileLock} from '../../../sys/flock.js'
import type {
  FirewallBackend,
  FirewallTx,
  ForwardedContainer,
  ForwardPolicy,
  Masquerade,
  MasqueradeRemoval,
  PortForwarding,
  PortForwardingRemoval,
} from '../firewall.js'
import {checkIn, emptyWithout, FWD_TABLE, forwardingFault, isolatePorts, planAccept, planRemove, planRemoveBridge} from './forwarding.js'
import {ensureIptablesAccept, forgetIptablesAccept, removeIptablesAccept} from './iptables-accept.js'
import {DEFAULT_NFT_LOCK_PATH, NFT_PROGRAMS, nftApply, nftListTable, nftStats, takeNftLock, type ListedTable} from './io.js'
import {MASQ_TABLE, planMasquerade, planMasqueradeRemoval} from './masquerade.js'
import {addressesOf, checkPortsIn, HOSTPORT_TABLE, nftFamily, planPublish, planUnpublish, portsFault} from './portmap.js'
import {NftScript, type NftFamily} from './script.js'

/** A table a removal reads: family and name. */
type TableKey = `${NftFamily} ${string}`
type Listings = ReadonlyMap<TableKey, ListedTable | undefined>
/** One recorded change: the tables it needs listed, and how it writes its lines. */
interface Change {
  reads: readonly TableKey[]
  write: (s: NftScript, listed: Listings) => void
}

const MAX_RETRIES = 2

const key = (f: NftFamily, table: string): TableKey => `${f} ${table}`

async function listAll(keys: Iterable<TableKey>): Promise<Map<TableKey, ListedTable | undefined>> {
  const ks = [...new Set(keys)]
  const listed = await Promise.all(
    ks.map((k) => {
      const [f, t] = k.split(' ') as [NftFamily, string]
      return nftListTable(f, t)
    }),
  )
  return new Map(ks.map((k, i) => [k, listed[i]]))
}

/** One chain's firewall transaction, on nftables. */
export class NftablesFirewall implements FirewallTx {
  private readonly changes: Change[] = []
  /** Bridges (and ports) to isolate after the script applied (isolation 'isolated'). */
  private readonly isolate: Array<{bridge: string; port?: string}> = []
  /** Whether the commit adds to inet ctrnet (then iptables' FORWARD must accept the mark too). */
  private accepts = false
  private done = false

  constructor(private readonly lockPath: string = DEFAULT_NFT_LOCK_PATH) {}

  /** The script an ADD would apply now (for tests and tools): changes that need no listing only. */
  script(): string {
    const s = new NftScript()
    for (const c of this.changes) if (c.reads.length === 0) c.write(s, new Map())
    return s.text()
  }

  masquerade(m: Masquerade): Promise<void> {
    return this.record([], (s) => planMasquerade(s, m))
  }

  removeMasquerade(m: MasqueradeRemoval): Promise<void> {
    const k = key('inet', MASQ_TABLE)
    return this.record([k], (s, l) => planMasqueradeRemoval(s, l.get(k), m))
  }

  publishPorts(p: PortForwarding): Promise<void> {
    const fault = portsFault(p)
    if (fault) return Promise.reject(new Error(`nftables: cannot publish the ports of ${p.containerId} : ${fault}`))
    return this.record([], (s) => planPublish(s, p))
  }

  unpublishPorts(p: PortForwardingRemoval): Promise<void> {
    const keys = p.families.map((f) => key(nftFamily(f), HOSTPORT_TABLE))
    return this.record(keys, (s, l) => {
      for (const f of p.families) planUnpublish(s, f, l.get(key(nftFamily(f), HOSTPORT_TABLE)), p)
    })
  }

  async checkPorts(p: PortForwarding): Promise<string | undefined> {
    const fams = addressesOf(p)
    const listed = await listAll(fams.map(([f]) => key(nftFamily(f), HOSTPORT_TABLE)))
    for (const [f, address] of fams) {
      const problem = checkPortsIn(listed.get(key(nftFamily(f), HOSTPORT_TABLE)), p, f, address)
      if (problem) return problem
    }
    return undefined
  }

  async acceptForwarding(policy: ForwardPolicy, on: ForwardedContainer): Promise<void> {
    const fault = forwardingFault(policy, on)
    if (fault) throw new Error(`nftables: cannot accept the forwarding of ${on.addresses.join(', ')} : ${fault}`)
    await this.record([], (s) => planAccept(s, policy, on))
    this.accepts = true
    if (policy.isolation === 'isolated') this.isolate.push({bridge: on.bridge!, ...(on.port ? {port: on.port} : {})})
  }

  removeForwarding(on: ForwardedContainer): Promise<void> {
    return this.record([], (s) => planRemove(s, on))
  }

  async checkForwarding(policy: ForwardPolicy, on: ForwardedContainer): Promise<string | undefined> {
    if (on.addresses.length === 0) return undefined
    const listed = await nftListTable('inet', FWD_TABLE)
    return checkIn(listed, policy, on)
  }

  async commit(): Promise<void> {
    this.assertOpen()
    this.done = true
    const reads = this.changes.flatMap((c) => c.reads)
    let lock: FileLock | undefined
    try {
      if (reads.length) lock = await takeNftLock(this.lockPath)
      for (let attempt = 0; ; attempt++) {
        const listed = reads.length ? await listAll(reads) : new Map<TableKey, ListedTable | undefined>()
        const s = new NftScript()
        for (const c of this.changes) c.write(s, listed)
        const r = await nftApply(s)
        if (r.ok) break
        if (!reads.length || attempt >= MAX_RETRIES) throw new Error(`nft: ${r.stderr || 'failed'}`)
        nftStats.retries++
      }
    } finally {
      lock?.release()
    }
    for (const i of this.isolate) isolatePorts(i.bridge, i.port)
    // after the script: a removeBridge that listed the table before it did not see this container and forgot the state
    if (this.accepts) await ensureIptablesAccept(this.lockPath)
  }

  release(): void {
    this.done = true
  }

  private assertOpen(): void {
    if (this.done) throw new Error('nftables: the firewall transaction is already committed or released')
  }

  /** Records a change, rendering it once now so that a value the writer refuses fails the change, not the commit. */
  private async record(reads: readonly TableKey[], write: Change['write']): Promise<void> {
    this.assertOpen()
    write(new NftScript(), new Map())
    this.changes.push({reads, write})
  }
}

/**
 * Removes one bridge's elements (network rm): idempotent, under the lock.
 * When inet ctrnet then holds nothing (no container, no other bridge), the
 * generic iptables accept goes too (iptables-accept.ts).
 */
async function removeBridge(bridge: string, opts: {lockPath?: string} = {}): Promise<void> {
  const lockPath = opts.lockPath ?? DEFAULT_NFT_LOCK_PATH
  const lock = await takeNftLock(lockPath)
  try {
    forgetIptablesAccept(lockPath)
    for (let attempt = 0; ; attempt++) {
      const s = new NftScript()
      const listed = await nftListTable('inet', FWD_TABLE)
      planRemoveBridge(s, listed, bridge)
      const r = await nftApply(s)
      if (r.ok) {
        if (emptyWithout(listed, bridge)) await removeIptablesAccept(lockPath)
        return
      }
      if (attempt >= MAX_RETRIES) throw new Error(`nft: ${r.stderr || 'failed'}`)
      nftStats.retries++
    }
  } finally {
    lock.release()
  }
}

export const nftablesBackend: FirewallBackend = {
  name: 'nftables',
  programs: NFT_PROGRAMS,
  open: (opts = {}) => new NftablesFirewall(opts.lockPath),
  closed: () => {
    const tx = new NftablesFirewall()
    tx.release()
    return tx
  },
  removeBridge,
}
