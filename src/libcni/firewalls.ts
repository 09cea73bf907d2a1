import {FIREWALL_BACKENDS, firewallBackend, type FirewallBackendName} from '../kernel/netfilter/backends/index.js'
import type {FirewallBackend, FirewallTx} from '../kernel/netfilter/firewall.js'

/**
 * The firewall transactions of one chain: one per backend its plugins use
 * (each plugin's is resolved by chain.ts), opened when a plugin first gets
 * it (opening costs nothing until a change is recorded), committed together
 * after the whole chain, in a fixed order (FIREWALL_BACKENDS), and all
 * released in any case. A closed set (CHECK, STATUS) hands out closed
 * transactions, whose changes throw and whose checks work.
 *
 * The commits are not atomic across backends: when one fails after another
 * committed, the chain fails and the runtime undoes it as any failed chain
 * (ADD: every plugin's DEL).
 */
export class ChainFirewalls {
  private readonly txs = new Map<FirewallBackendName, FirewallTx>()

  /** `backendOf`: where a backend is found (backends/index.ts; tests hand in their own). */
  constructor(
    private readonly opts: {lockPath?: string; closed?: boolean} = {},
    private readonly backendOf: (name: FirewallBackendName) => FirewallBackend = firewallBackend,
  ) {}

  /** The chain's transaction on this backend. */
  tx(name: FirewallBackendName): FirewallTx {
    let tx = this.txs.get(name)
    if (!tx) {
      const backend = this.backendOf(name)
      tx = this.opts.closed ? backend.closed() : backend.open({lockPath: this.opts.lockPath})
      this.txs.set(name, tx)
    }
    return tx
  }

  /** The backends with a transaction, in commit order ("iptables" when none: the wording of a chain without one). */
  get label(): string {
    const names = FIREWALL_BACKENDS.filter((n) => this.txs.has(n))
    return names.length ? names.join(' and ') : 'iptables'
  }

  /** Commits every transaction, in FIREWALL_BACKENDS order; the first failure stops the rest. */
  async commit(): Promise<void> {
    for (const name of FIREWALL_BACKENDS) await this.txs.get(name)?.commit()
  }

  /** Releases every transaction (idempotent); one that fails to does not keep the others. */
  release(): void {
    let failed: unknown
    for (const tx of this.txs.values()) {
      try {
        tx.release()
      } catch (err) {
        failed ??= err
      }
    }
    if (failed !== undefined) throw failed
  }
}
