/**
 * The firewall seam, as netavark keeps src/firewall/ (one driver per backend
 * behind one trait) apart from its network drivers: plugins state WHAT they
 * need from the host's firewall in typed terms (masquerade this container,
 * publish these ports to it, accept its forwarded traffic), never rules; a
 * backend (kernel/netfilter/<backend>/) renders that into its own rules,
 * chains and comments. backends/index.ts holds the backends (iptables:
 * the reference plugins' layout, so that they and ctrnet undo each other's
 * attachments; nftables); each plugin's config chooses one.
 *
 * One FirewallTx per CNI chain and backend: the runtime opens it, hands it
 * to every plugin of the chain on that backend in its request
 * (`req.firewall`), and commits it once the whole chain has succeeded; a chain that fails is released without a
 * commit and has changed nothing. The change methods only record (under the
 * backend's lock, taken at the first one); the check methods only read, need
 * no lock and work on a closed transaction too (CHECK and STATUS
 * get a closed one: a change on it throws).
 *
 * The seam has its own vocabulary: its types describe needs, not a plugin's
 * config; each plugin maps its parsed config onto them, so that only the
 * plugin's folder knows its conflist keys.
 *
 * Removals take what identifies the container's rules (network name and
 * container id) and tolerate a host without IPv6.
 */
import type {Family} from '../ip/addr.js'

/** Masquerade the container's traffic that leaves its subnet (the bridge plugin's masquerade, overlay). */
export interface Masquerade {
  /** The network name and container id: they name the rules, and let them go without addresses. */
  network: string
  containerId: string
  /**
   * The container's interface name (CNI_IFNAME): the nftables backend names
   * its rules with it, as the reference ipMasq does; eth0 when not given.
   */
  ifName?: string
  /**
   * The container's addresses, each as CIDR whose prefix is the subnet whose
   * traffic is NOT masqueraded (bridge: the container's subnet; overlay: the
   * whole overlay). Multicast is never masqueraded. Several of one family
   * share the rules' home.
   */
  addresses: readonly string[]
}

/** The masquerade of one container, to remove. */
export interface MasqueradeRemoval {
  network: string
  containerId: string
  /** As Masquerade.ifName; not given: every interface of the container on the network. */
  ifName?: string
  /** Only the families of these addresses are looked at; none given: IPv4 and IPv6. */
  addresses?: readonly string[]
}

/** One published port. */
export interface PublishedPort {
  hostPort: number
  containerPort: number
  protocol: string
  /** Only traffic to this host address (of the container's family); unspecified (0.0.0.0, ::) = any. */
  hostIP?: string
}

/**
 * How the traffic that reaches a container through one of its published
 * ports from the container's own subnet (hairpin) or from the host's
 * localhost (IPv4) is masqueraded:
 *  - none: it is not;
 *  - mark: the backend marks it with this bit (0..31) and masquerades what
 *    carries the mark, in shared rules of its own;
 *  - chain: it is sent to this existing chain, which someone else (e.g.
 *    kube-proxy) marks and masquerades.
 */
export type HairpinMasquerade = {kind: 'none'} | {kind: 'mark'; bit: number} | {kind: 'chain'; chain: string}

/** Publish host ports to one container. */
export interface PortForwarding {
  /** The network name and container id: they name the rules, and let them go without ports or addresses. */
  network: string
  containerId: string
  ports: readonly PublishedPort[]
  /**
   * The container's address per family (CIDR, with the subnet prefix: the
   * hairpin source); a family without one is left alone.
   */
  addresses: Readonly<Partial<Record<Family, string>>>
  hairpinMasquerade: HairpinMasquerade
  /**
   * Extra match arguments per family, added to the rules that catch the
   * published ports (an argument list in iptables syntax, each argument
   * already checked by whoever states the need).
   */
  extraMatch?: Readonly<Partial<Record<Family, readonly string[]>>>
}

/** The published ports of one container, to remove (with or without the mappings). */
export interface PortForwardingRemoval {
  network: string
  containerId: string
  /** The families to look at (IPv6 may be missing on the host). */
  families: readonly Family[]
}

/** How a container's forwarded traffic is let through. */
export interface ForwardPolicy {
  /** The chain jumped to before the per-container rules, which the admin fills. */
  adminChain: string
  /**
   * none: accept the container's traffic; bridge: also isolate the
   * container's bridge, dropping what it forwards to another isolated bridge;
   * isolated: bridge, and also drop traffic between the containers of the
   * bridge (icc=false), keeping their way out and their published ports.
   */
  isolation: 'none' | 'bridge' | 'isolated'
  /**
   * published: new connections from outside the host reach the containers
   * of the bridge only through published ports (Docker 28's default);
   * routed: directly too (Docker's gateway_mode_ipv4/ipv6=routed).
   */
  exposure: 'published' | 'routed'
}

/** The container whose forwarded traffic is accepted. */
export interface ForwardedContainer {
  /** Its addresses (CIDR; only the address counts). */
  addresses: readonly string[]
  /** The bridge it is attached to: needed by isolation 'bridge' and 'isolated' and by exposure 'published'. */
  bridge?: string
  /**
   * Its port on the bridge (the host end of its veth), for isolation
   * 'isolated'; not given: every port of the bridge is isolated.
   */
  port?: string
  /**
   * Interfaces besides the bridge itself whose new connections reach the
   * bridge's containers under exposure 'published' (an overlay's VXLAN device).
   */
  ingress?: readonly string[]
}

/** The firewall transaction of one chain. */
export interface FirewallTx {
  /** Records the masquerade of the container's addresses. */
  masquerade(m: Masquerade): Promise<void>
  /** Records the removal of the container's masquerade (idempotent, no netns or address needed). */
  removeMasquerade(m: MasqueradeRemoval): Promise<void>
  /** Records the publishing of the container's ports, for each family it has an address of. */
  publishPorts(p: PortForwarding): Promise<void>
  /** Records the removal of the container's published ports (never the shared parts). */
  unpublishPorts(p: PortForwardingRemoval): Promise<void>
  /** Reads whether the container's ports are published: the first problem found, or undefined. */
  checkPorts(p: PortForwarding): Promise<string | undefined>
  /** Records that the container's forwarded traffic is accepted (and, with isolation, its bridge isolated). */
  acceptForwarding(policy: ForwardPolicy, on: ForwardedContainer): Promise<void>
  /** Records the removal of the container's own accept rules (the shared ones and a bridge's isolation stay). */
  removeForwarding(on: ForwardedContainer): Promise<void>
  /** Reads whether the container's forwarded traffic is accepted: the first problem found, or undefined. */
  checkForwarding(policy: ForwardPolicy, on: ForwardedContainer): Promise<string | undefined>
  /** Applies everything recorded (the runtime calls it once, after the whole chain succeeded). */
  commit(): Promise<void>
  /** Drops the lock; idempotent. Released without a commit, the transaction has applied nothing. */
  release(): void
}

/** One firewall backend (kernel/netfilter/<name>/). */
export interface FirewallBackend {
  readonly name: string
  /** The programs a chain that changes the firewall runs (the runtime checks them before the chain starts). */
  readonly programs: readonly string[]
  /** A new transaction for one chain; `lockPath` is the lock every ctrnet process takes to change the firewall. */
  open(opts?: {lockPath?: string}): FirewallTx
  /** A transaction that takes no changes (its checks work): for CHECK and STATUS. */
  closed(): FirewallTx
  /**
   * Removes everything the backend keeps for one bridge (its isolation and
   * exposure rules), for `network rm`: idempotent; never the shared parts
   * other bridges use.
   */
  removeBridge(bridge: string, opts?: {lockPath?: string}): Promise<void>
}
