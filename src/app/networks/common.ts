import {errorMessage} from '../../sys/errors.js'
import {type NetworkEntry, listNetworks} from '../../netconf/store.js'
import type {Settings} from '../settings.js'

/**
 * What the `network` use cases share, following nerdctl's pkg/cmd/network:
 * the visible networks of a namespace and the lookup of requests by name or
 * ID prefix (ListNetworksMatch). Each command has its own module beside this
 * one (list, create, inspect, remove), so that it loads only what it needs.
 */

/** Receives one-line warnings (unreadable conflists, ignored options). */
export type Warn = (message: string) => void

export const PSEUDO_NETWORKS = ['host', 'none']

export function skipper(warn: Warn) {
  return (file: string, err: Error) => {
    const msg = errorMessage(err)
    const why = msg.startsWith(file + ': ') ? msg.slice(file.length + 2) : msg
    warn(`skipping ${file}: ${why}`)
  }
}

/** The networks visible to the namespace; unreadable files are skipped with a warning. */
export function visible(s: Pick<Settings, 'confDir' | 'namespace'>, warn: Warn): NetworkEntry[] {
  return listNetworks(s.confDir, s.namespace, skipper(warn))
}

export interface Match {
  req: string
  nets: NetworkEntry[]
  pseudo?: boolean
}

/** The one network a request names, or undefined after recording nerdctl's error for none or several. */
export function single(m: Match, errors: string[]): NetworkEntry | undefined {
  if (m.nets.length > 1) errors.push(`multiple IDs found with provided prefix: ${m.req}`)
  else if (m.nets.length === 0) errors.push(`no network found matching: ${m.req}`)
  return m.nets.length === 1 ? m.nets[0] : undefined
}

function pseudoEntry(name: string): NetworkEntry {
  const conf = {cniVersion: '1.0.0', name, plugins: [{type: 'nerdctl-pseudo'}]}
  return {name, file: '', bytes: Buffer.from(JSON.stringify(conf)), conf}
}

/** By exact name first, else by nerdctlID prefix. host/none only when allowed. */
export function matchNetworks(all: NetworkEntry[], reqs: string[], allowPseudo: boolean): {matches: Match[]; errors: string[]} {
  const matches: Match[] = []
  const errors: string[] = []
  // nerdctl keys the requests by name: a request given twice counts once.
  for (const req of new Set(reqs)) {
    if (PSEUDO_NETWORKS.includes(req)) {
      if (!allowPseudo) errors.push(`pseudo network not allowed: ${req}`)
      else matches.push({req, nets: [pseudoEntry(req)], pseudo: true})
      continue
    }
    let nets = all.filter((n) => n.name === req)
    if (nets.length === 0) nets = all.filter((n) => n.nerdctlID !== undefined && req.length <= n.nerdctlID.length && n.nerdctlID.startsWith(req))
    matches.push({req, nets})
  }
  return {matches, errors}
}
