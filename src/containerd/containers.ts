import {CtrnetError} from '../sys/errors.js'
import type {ContainerInfo, ContainerdClient} from './client.js'

/**
 * Finds a container in the client's namespace by full id, by the name label
 * `nameLabel`, or by unique id prefix (in that order, as nerdctl's walker).
 */
export async function findContainer(client: ContainerdClient, ref: string, nameLabel: string): Promise<ContainerInfo> {
  if (!ref) throw new CtrnetError('container', 'empty container name or id')
  const exact = await client.getContainer(ref)
  if (exact) return exact
  const all = await client.listContainers()
  const byName = all.filter((c) => c.labels?.[nameLabel] === ref)
  if (byName.length === 1) return byName[0]
  if (byName.length > 1) {
    throw new CtrnetError(`container ${ref}`, `the name is ambiguous: ${byName.map((c) => c.id).join(', ')}`)
  }
  const byPrefix = all.filter((c) => c.id.startsWith(ref))
  if (byPrefix.length === 1) return byPrefix[0]
  if (byPrefix.length > 1) {
    throw new CtrnetError(`container ${ref}`, `multiple IDs found with provided prefix: ${byPrefix.map((c) => c.id).join(', ')}`)
  }
  await assertNamespace(client)
  throw new CtrnetError(`no such container: ${ref}`, `not found in containerd namespace "${client.namespace}"`)
}

/** Errors with "unknown namespace" when the client's namespace does not exist. */
async function assertNamespace(client: ContainerdClient): Promise<void> {
  const nss = await client.listNamespaces()
  if (!nss.includes(client.namespace)) {
    throw new CtrnetError(`unknown containerd namespace "${client.namespace}"`, nss.length ? `known: ${nss.join(', ')}` : 'containerd has no namespaces')
  }
}

/** The parts of a container's OCI spec we read (containerd stores the spec as JSON in an Any). */
export interface OciSpec {
  hostname?: string
  annotations?: Record<string, string>
}

/** The container's OCI spec, or undefined when it has none or it is not JSON. */
export function ociSpec(c: ContainerInfo): OciSpec | undefined {
  const value = c.spec?.value
  if (!value || value.length === 0) return undefined
  try {
    return JSON.parse(Buffer.from(value).toString('utf8')) as OciSpec
  } catch {
    return undefined
  }
}
