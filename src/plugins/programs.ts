import {firewallBackend} from '../kernel/netfilter/backends/index.js'

/**
 * What the plugins that state firewall needs (masquerade, published ports,
 * accepted forwarding) run: the firewall backend's programs (for iptables:
 * flock, iptables-save, iptables-restore). Each embedded plugin lists its
 * programs itself (EmbeddedPlugin.programs); the runtime refuses a request
 * before any kernel work when one is not installed (sys/exec.ts names the
 * Debian package).
 */
export const FIREWALL_PROGRAMS: readonly string[] = firewallBackend().programs
