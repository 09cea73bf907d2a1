import {defaultFirewallBackend, FIREWALL_BACKENDS, isFirewallBackendName, type FirewallBackendName, type ProgramLookup} from '../kernel/netfilter/backends/index.js'
import type {NetConfList, PluginConf} from '../plugins/types.js'
import {showToken} from '../kernel/tokens.js'
import {CtrnetError} from '../sys/errors.js'
import {goJson, type CreateOptions, type Rendered} from './render.js'

/**
 * `network create --firewall-backend`: which firewall backend a network's
 * plugins use, written into the conflist in the reference plugins' own
 * fields (CNI plugins >= 1.6): bridge `ipMasqBackend`, portmap `backend`.
 * ctrnet's firewall plugin and the overlay follow them (libcni/chain.ts).
 *
 * `auto` is resolved at create time by the reference's rule
 * (backends/index.ts defaultFirewallBackend): nftables where the iptables
 * programs are missing and nft is not, iptables otherwise. When it resolves
 * to iptables nothing is written, so the file stays byte for byte what
 * nerdctl writes (and the plugins' own default, iptables on such a host,
 * applies). A backend given by name is always written.
 */

export type FirewallBackendChoice = NonNullable<CreateOptions['firewallBackend']>

export const FIREWALL_BACKEND_CHOICES: readonly FirewallBackendChoice[] = ['auto', ...FIREWALL_BACKENDS]

export function isFirewallBackendChoice(v: unknown): v is FirewallBackendChoice {
  return v === 'auto' || isFirewallBackendName(v)
}

/** Refuses a choice that is none of FIREWALL_BACKEND_CHOICES (the CLI has checked its own). */
export function validateFirewallBackendChoice(what: string, v: unknown): void {
  if (v !== undefined && !isFirewallBackendChoice(v)) throw new CtrnetError(what, `invalid --firewall-backend: must be ${FIREWALL_BACKEND_CHOICES.join(', ')}, not ${showToken(v)}`)
}

/** The backend a choice resolves to, and whether it is written into the conflist. */
export function resolveFirewallBackend(choice: FirewallBackendChoice, has?: ProgramLookup): {backend: FirewallBackendName; write: boolean} {
  if (choice !== 'auto') return {backend: choice, write: true}
  const backend = defaultFirewallBackend(has)
  return {backend, write: backend !== 'iptables'}
}

/** The keys a bridge entry's ipMasqBackend goes before (nerdctl's order: after bridge, isGateway, ipMasq). */
const AFTER_MASQ = ['mtu', 'hairpinMode', 'ipam', 'capabilities']

/** A copy of `entry` with `key: value` inserted before the first of `before` (at the end when none is there). */
function insertKey(entry: PluginConf, key: string, value: unknown, before: readonly string[]): PluginConf {
  const out: Record<string, unknown> = {}
  let done = false
  for (const [k, v] of Object.entries(entry)) {
    if (!done && before.includes(k)) {
      out[key] = value
      done = true
    }
    out[k] = v
  }
  if (!done) out[key] = value
  return out as PluginConf
}

/**
 * The rendered conflist (render.ts, nerdctl's) with the backend's fields,
 * when the choice writes them: bridge `ipMasqBackend` (also without ipMasq:
 * it then names the network's backend for the firewall plugin), portmap
 * `backend`. A network without either (macvlan, ipvlan) has no firewall
 * rules: a named backend is ignored with a warning. Returned unchanged (the
 * same text) when nothing is written.
 */
export function withFirewallBackend(r: Rendered, choice: FirewallBackendChoice = 'auto', has?: ProgramLookup): Rendered {
  const {backend, write} = resolveFirewallBackend(choice, has)
  if (!write) return r
  const plugins = r.conf.plugins
  if (!plugins.some((p) => p.type === 'bridge' || p.type === 'portmap')) {
    if (choice === 'auto') return r
    return {...r, warnings: [...r.warnings, `--firewall-backend ${choice} ignored: a ${plugins[0]?.type ?? ''} network has no firewall rules`]}
  }
  const written = plugins.map((p) => {
    if (p.type === 'bridge') return insertKey(p, 'ipMasqBackend', backend, AFTER_MASQ)
    if (p.type === 'portmap') return {...p, backend}
    return p
  })
  const conf = {...r.conf, plugins: written}
  return {...r, conf, text: goJson(conf)}
}

/** The firewall backend a conflist names (its bridge's, else its portmap's), or undefined: the plugins' default. */
export function namedFirewallBackend(conf: Pick<NetConfList, 'plugins'>): FirewallBackendName | undefined {
  for (const p of conf.plugins ?? []) {
    const v = p.type === 'bridge' ? p.ipMasqBackend : p.type === 'portmap' ? p.backend : undefined
    if (isFirewallBackendName(v)) return v
  }
  return undefined
}
