/**
 * What the plugins that record iptables rules run (the netfilter transaction:
 * flock, iptables-save, iptables-restore). Each embedded plugin lists its
 * programs itself (EmbeddedPlugin.programs); the runtime refuses a request
 * before any kernel work when one is not installed (sys/exec.ts names the
 * Debian package).
 */
export const IPTABLES_PROGRAMS = ['iptables-save', 'iptables-restore', 'flock']
