/**
 * Which containers use a network. STUB until the containerd issue: returns
 * nothing. The real implementation must keep these signatures, load grpc
 * lazily, and return [] / {} when no socket exists at the address (a socket
 * that exists but fails is an error).
 */

export interface NetworkUser {
  namespace: string
  id: string
  /** nerdctl/name label, else the id */
  name: string
  /** RUNNING | PAUSED */
  status: string
}

export interface InspectContainer {
  Name: string
  MacAddress: string
  IPv4Address: string
  IPv6Address: string
}

export interface ContainerdOpts {
  address: string
  namespace: string
  cacheDir: string
}

/** Running or paused containers, in any namespace, attached to the network. */
export async function networkUsers(_opts: ContainerdOpts, _network: string): Promise<NetworkUser[]> {
  return []
}

/** `Containers` of `network inspect`: full container id -> details. */
export async function inspectContainers(_opts: ContainerdOpts, _network: string): Promise<Record<string, InspectContainer>> {
  return {}
}
