/**
 * PLACEHOLDER (issue 22, branch h22sel): a stand-in for the nftables backend,
 * which another branch writes; the lead replaces this file with the real one
 * at merge. It exists only so that the backend choice (backends/index.ts,
 * the runtime's per-backend transactions, `network create
 * --firewall-backend`) compiles and can be tested: every change and check
 * throws `not implemented`; a transaction nobody recorded on commits nothing.
 */
import type {FirewallBackend, FirewallTx} from '../firewall.js'

const notImplemented = (): never => {
  throw new Error('nftables backend: not implemented')
}

function placeholderTx(): FirewallTx {
  return {
    masquerade: async () => notImplemented(),
    removeMasquerade: async () => notImplemented(),
    publishPorts: async () => notImplemented(),
    unpublishPorts: async () => notImplemented(),
    checkPorts: async () => notImplemented(),
    acceptForwarding: async () => notImplemented(),
    removeForwarding: async () => notImplemented(),
    checkForwarding: async () => notImplemented(),
    commit: async () => undefined,
    release: () => undefined,
  }
}

export const nftablesBackend: FirewallBackend = {
  name: 'nftables',
  programs: ['nft'],
  open: () => placeholderTx(),
  closed: () => placeholderTx(),
}
