/**
 * Issue 22, "choosing the backend": the reference plugins' rule for a config
 * that names no backend, `network create --firewall-backend` (what is written
 * into the conflist, and when nothing is), the plugins' own fields and their
 * refusals, the backend each plugin of a chain gets, the programs a chain
 * needs, and the runtime's per-backend transactions.
 */
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {backendInstalled, defaultFirewallBackend, type FirewallBackendName} from '../../src/kernel/netfilter/backends/index.js'
import type {FirewallBackend, FirewallTx} from '../../src/kernel/netfilter/firewall.js'
import {defaultCreateOptions, goJson, renderNetwork, type CreateOptions} from '../../src/netconf/render.js'
import {namedFirewallBackend, resolveFirewallBackend, validateFirewallBackendChoice, withFirewallBackend} from '../../src/netconf/firewall-backend.js'
import {validateConflist} from '../../src/netconf/schema.js'
import {parseRequest, requireProgramsOf} from '../../src/libcni/chain.js'
import {ChainFirewalls} from '../../src/libcni/firewalls.js'
import {loadBridgeConf} from '../../src/plugins/bridge/config.js'
import {loadPortMapConf} from '../../src/plugins/portmap/index.js'
import type {NetConfList, PluginNetConf} from '../../src/plugins/types.js'
import {firewallBackendChoice} from '../../src/cli/settings.js'
import {formatError} from '../../src/sys/errors.js'
import {FOO} from './nerdctl-files.js'

const ALL = ['iptables-save', 'iptables-restore', 'flock', 'nft', 'ip', 'nsenter', 'sh', 'bridge', 'cat']
const lookup = (installed: string[]) => (p: string) => installed.includes(p)
const without = (...gone: string[]) => ALL.filter((p) => !gone.includes(p))

describe('the reference rule for a config that names no backend', () => {
  it('nftables only where iptables is not installed and nft is', () => {
    expect(defaultFirewallBackend(lookup(ALL))).toBe('iptables')
    expect(defaultFirewallBackend(lookup(without('iptables-save', 'iptables-restore')))).toBe('nftables')
    // neither: iptables (the runtime then names its missing program)
    expect(defaultFirewallBackend(lookup(without('iptables-save', 'iptables-restore', 'nft')))).toBe('iptables')
    expect(defaultFirewallBackend(lookup(without('nft')))).toBe('iptables')
  })

  it('a half-installed iptables is still iptables: its missing program is reported, not worked around', () => {
    expect(defaultFirewallBackend(lookup(without('iptables-restore')))).toBe('iptables')
    expect(defaultFirewallBackend(lookup(without('iptables-save')))).toBe('iptables')
    expect(backendInstalled('iptables', lookup(['iptables-save']))).toBe(true)
    expect(backendInstalled('nftables', lookup(['iptables-save']))).toBe(false)
  })
})

// ---- network create --------------------------------------------------------

const render = (name: string, over: Partial<CreateOptions> = {}) => renderNetwork(defaultCreateOptions(name, over), {usedSubnets: []})
type Entry = Record<string, unknown>
const entries = (r: {conf: NetConfList}) => r.conf.plugins as Entry[]

describe('network create --firewall-backend', () => {
  it('auto resolves at create time; only a resolved nftables or a named backend is written', () => {
    expect(resolveFirewallBackend('auto', lookup(ALL))).toEqual({backend: 'iptables', write: false})
    expect(resolveFirewallBackend('auto', lookup(without('iptables-save', 'iptables-restore')))).toEqual({backend: 'nftables', write: true})
    expect(resolveFirewallBackend('iptables', lookup([]))).toEqual({backend: 'iptables', write: true})
    expect(resolveFirewallBackend('nftables', lookup(ALL))).toEqual({backend: 'nftables', write: true})
  })

  it('auto on a host with iptables writes nothing: nerdctl\'s file byte for byte', () => {
    const r = render('foo')
    const out = withFirewallBackend(r, 'auto', lookup(ALL))
    expect(out).toBe(r)
    expect(out.text).toBe(FOO)
    expect(withFirewallBackend(r, undefined, lookup(ALL)).text).toBe(FOO)
  })

  it('a named backend: bridge ipMasqBackend after ipMasq, portmap backend after its capabilities', async () => {
    for (const backend of ['iptables', 'nftables'] as const) {
      const out = withFirewallBackend(render('foo'), backend, lookup(ALL))
      const [bridge, portmap, firewall, tuning] = entries(out)
      expect(Object.keys(bridge!)).toEqual(['type', 'bridge', 'isGateway', 'ipMasq', 'ipMasqBackend', 'hairpinMode', 'ipam'])
      expect(bridge!.ipMasqBackend).toBe(backend)
      expect(portmap).toEqual({type: 'portmap', capabilities: {portMappings: true}, backend})
      expect(Object.keys(portmap!)).toEqual(['type', 'capabilities', 'backend'])
      expect(firewall).toEqual({type: 'firewall', ingressPolicy: 'same-bridge'})
      expect(tuning).toEqual({type: 'tuning'})
      expect(out.text).toBe(goJson(out.conf))
      // the rest is nerdctl's file
      expect(out.text.replace(`      "ipMasqBackend": "${backend}",\n`, '').replace(`,\n      "backend": "${backend}"`, '')).toBe(FOO)
      await validateConflist('t', out.conf)
      expect(namedFirewallBackend(out.conf)).toBe(backend)
    }
    expect(namedFirewallBackend(render('foo').conf)).toBeUndefined()
  })

  it('auto where the iptables programs are missing writes nftables', () => {
    const out = withFirewallBackend(render('foo'), 'auto', lookup(without('iptables-save', 'iptables-restore')))
    expect(entries(out)[0]!.ipMasqBackend).toBe('nftables')
    expect(entries(out)[1]!.backend).toBe('nftables')
  })

  it('--internal: the bridge names the backend (no ipMasq, no portmap): the firewall plugin follows it', async () => {
    const out = withFirewallBackend(render('intl', {internal: true}), 'nftables')
    expect(entries(out).map((p) => p.type)).toEqual(['bridge', 'firewall', 'tuning'])
    expect(Object.keys(entries(out)[0]!)).toEqual(['type', 'bridge', 'ipMasqBackend', 'hairpinMode', 'ipam'])
    await validateConflist('t', out.conf)
  })

  it('-o mtu keeps nerdctl\'s order: ipMasqBackend before mtu', () => {
    const out = withFirewallBackend(render('mtu', {options: ['mtu=1400']}), 'iptables')
    expect(Object.keys(entries(out)[0]!)).toEqual(['type', 'bridge', 'isGateway', 'ipMasq', 'ipMasqBackend', 'mtu', 'hairpinMode', 'ipam'])
  })

  it('overlay: portmap names it (the overlay plugin and firewall follow)', async () => {
    const r = render('ovl', {driver: 'overlay', subnets: ['10.200.0.0/16'], options: ['etcd=http://10.0.0.10:2379', 'vni=42']})
    const out = withFirewallBackend(r, 'nftables')
    expect(entries(out)[0]!.ipMasqBackend).toBeUndefined()
    expect(entries(out)[1]!.backend).toBe('nftables')
    await validateConflist('t', out.conf)
  })

  it('macvlan has no firewall rules: a named backend is ignored with a warning, auto says nothing', () => {
    const r = render('mv', {driver: 'macvlan', options: ['parent=eth0']})
    const named = withFirewallBackend(r, 'nftables')
    expect(named.text).toBe(r.text)
    expect(named.warnings).toEqual(['--firewall-backend nftables ignored: a macvlan network has no firewall rules'])
    expect(withFirewallBackend(r, 'auto', lookup(['nft']))).toBe(r)
  })

  it('the schema takes iptables and nftables only', async () => {
    const out = withFirewallBackend(render('foo'), 'nftables')
    const bad = JSON.parse(JSON.stringify(out.conf)) as NetConfList
    bad.plugins[0]!.ipMasqBackend = 'firewalld'
    await expect(validateConflist('network create foo', bad)).rejects.toThrow(/refusing to write an invalid conflist/)
    const bad2 = JSON.parse(JSON.stringify(out.conf)) as NetConfList
    bad2.plugins[1]!.backend = 'x'
    await expect(validateConflist('network create foo', bad2)).rejects.toThrow(/refusing to write an invalid conflist/)
  })

  it('the flag, else CTRNET_FIREWALL_BACKEND, else auto; refused naming where the value came from', () => {
    expect(firewallBackendChoice(undefined, {})).toBe('auto')
    expect(firewallBackendChoice(undefined, {CTRNET_FIREWALL_BACKEND: ''})).toBe('auto')
    expect(firewallBackendChoice(undefined, {CTRNET_FIREWALL_BACKEND: 'nftables'})).toBe('nftables')
    expect(firewallBackendChoice('iptables', {CTRNET_FIREWALL_BACKEND: 'nftables'})).toBe('iptables')
    const line = (f: () => unknown) => {
      try {
        f()
      } catch (err) {
        return formatError(err)
      }
      throw new Error('not refused')
    }
    expect(line(() => firewallBackendChoice('nft'))).toBe('ctrnet: --firewall-backend : must be auto, iptables or nftables, not "nft"')
    expect(line(() => firewallBackendChoice('iptables\n--flush'))).toBe('ctrnet: --firewall-backend : must be auto, iptables or nftables, not "iptables\\n--flush"')
    expect(line(() => firewallBackendChoice(undefined, {CTRNET_FIREWALL_BACKEND: 'NFTABLES'}))).toBe(
      'ctrnet: CTRNET_FIREWALL_BACKEND : must be auto, iptables or nftables, not "NFTABLES"',
    )
    expect(line(() => validateFirewallBackendChoice('network create x', 'ebtables'))).toBe(
      'ctrnet: network create x : invalid --firewall-backend: must be auto, iptables, nftables, not "ebtables"',
    )
    expect(() => validateFirewallBackendChoice('network create x', undefined)).not.toThrow()
  })
})

// ---- the plugins' own fields ---------------------------------------------------

const stdin = (entry: Entry): PluginNetConf => ({name: 'n1', cniVersion: '1.0.0', ...entry}) as PluginNetConf

describe('bridge ipMasqBackend and portmap backend', () => {
  it('the reference parsers take iptables and nftables, and refuse anything else in their own words', () => {
    expect(loadBridgeConf(stdin({type: 'bridge', ipMasqBackend: 'nftables'}), []).ipMasqBackend).toBe('nftables')
    expect(loadBridgeConf(stdin({type: 'bridge'}), []).ipMasqBackend).toBeUndefined()
    expect(loadBridgeConf(stdin({type: 'bridge', ipMasqBackend: null}), []).ipMasqBackend).toBeUndefined()
    expect(() => loadBridgeConf(stdin({type: 'bridge', ipMasqBackend: 'x'}), [])).toThrow('unknown ipmasq backend "x"')
    expect(() => loadBridgeConf(stdin({type: 'bridge', ipMasqBackend: ''}), [])).toThrow('unknown ipmasq backend ""')
    expect(loadPortMapConf(stdin({type: 'portmap', backend: 'iptables'}), 'c1').backend).toBe('iptables')
    expect(loadPortMapConf(stdin({type: 'portmap'}), 'c1').backend).toBeUndefined()
    expect(() => loadPortMapConf(stdin({type: 'portmap', backend: 'x'}), 'c1')).toThrow('unrecognized backend "x"')
  })

  it('portmap: options of iptables with nftables are refused as the reference refuses them', () => {
    const pm = (over: Entry) => () => loadPortMapConf(stdin({type: 'portmap', backend: 'nftables', ...over}), 'c1')
    expect(pm({externalSetMarkChain: 'KUBE-MARK-MASQ'})).toThrow('nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain]')
    expect(pm({conditionsV4: ['-d', '10.0.0.0/8'], conditionsV6: ['!', '-d', 'fd00::/8']})).toThrow(
      'nftables backend was requested but configuration contains iptables-specific options [conditionsV4 conditionsV6]',
    )
    expect(() => loadPortMapConf(stdin({type: 'portmap', backend: 'iptables', externalSetMarkChain: 'KUBE-MARK-MASQ'}), 'c1')).not.toThrow()
  })

  it('the runtime refuses a wrong value by field name before anything runs', () => {
    const refusal = (plugins: Entry[]) => {
      try {
        parseRequest('ADD', {cniVersion: '1.0.0', name: 'n1', plugins} as NetConfList, {containerId: 'c1', ifName: 'eth0'}, true)
      } catch (err) {
        return formatError(err)
      }
      throw new Error('not refused')
    }
    const bridge = {type: 'bridge', bridge: 'br-n1', ipam: {type: 'host-local', subnet: '10.9.0.0/24'}}
    expect(refusal([{...bridge, ipMasqBackend: 'x'}])).toBe('ctrnet: invalid plugins[0].ipMasqBackend: must be iptables or nftables, not "x"')
    expect(refusal([{...bridge, ipMasqBackend: 5}])).toBe('ctrnet: invalid plugins[0].ipMasqBackend: must be iptables or nftables, not 5')
    expect(refusal([bridge, {type: 'portmap', backend: 'firewalld'}])).toBe('ctrnet: invalid plugins[1].backend: must be iptables or nftables, not "firewalld"')
    expect(refusal([bridge, {type: 'portmap', backend: 'nftables\n--flush'}])).toBe('ctrnet: invalid plugins[1].backend: must be iptables or nftables, not "nftables\\n--flush"')
  })
})

// ---- the backend of each plugin of a chain, and the programs it needs ----------

/** A PATH of stub programs (empty executables): the runtime only looks them up. */
let stubs = ''
const savedPath = process.env.PATH
function withPath<T>(programs: string[], fn: () => T): T {
  const dir = mkdtempSync(join(stubs, 'path-'))
  for (const p of programs) {
    writeFileSync(join(dir, p), '')
    chmodSync(join(dir, p), 0o755)
  }
  process.env.PATH = dir
  try {
    return fn()
  } finally {
    process.env.PATH = savedPath
  }
}

beforeAll(() => {
  stubs = mkdtempSync(join(tmpdir(), 'ctrnet-fwb-'))
})
afterAll(() => {
  process.env.PATH = savedPath
  rmSync(stubs, {recursive: true, force: true})
})

const IPAM = {type: 'host-local', ranges: [[{subnet: '10.9.0.0/24', gateway: '10.9.0.1'}]], routes: [{dst: '0.0.0.0/0'}]}
/** nerdctl's chain (what `network create` writes, nerdctl's or ctrnet's with auto on a host with iptables). */
const nerdctlChain = (): Entry[] => [
  {type: 'bridge', bridge: 'br-n1', isGateway: true, ipMasq: true, hairpinMode: true, ipam: IPAM},
  {type: 'portmap', capabilities: {portMappings: true}},
  {type: 'firewall', ingressPolicy: 'same-bridge'},
  {type: 'tuning'},
]
const conf = (plugins: Entry[]): NetConfList => ({cniVersion: '1.0.0', name: 'n1', plugins}) as NetConfList
const chainOf = (plugins: Entry[]) => parseRequest('ADD', conf(plugins), {containerId: 'c1', ifName: 'eth0'}, true).chain
const backendsOf = (plugins: Entry[]) => chainOf(plugins).map((p) => `${p.type}:${p.backend}`)
const programsRefusal = (plugins: Entry[]): string | undefined => {
  try {
    requireProgramsOf(chainOf(plugins), 'n1')
    return undefined
  } catch (err) {
    return formatError(err)
  }
}

describe('the backend each plugin of a chain gets', () => {
  it('a network created by nerdctl (no field) keeps iptables where iptables exists', () => {
    withPath(ALL, () => {
      expect(backendsOf(nerdctlChain())).toEqual(['bridge:iptables', 'portmap:iptables', 'firewall:iptables', 'tuning:iptables'])
      expect(chainOf(nerdctlChain())[0]!.ipam!.backend).toBe('iptables')
      expect(programsRefusal(nerdctlChain())).toBeUndefined()
    })
  })

  it('the same network where only nft is installed: nftables, and no iptables program is required', () => {
    withPath(without('iptables-save', 'iptables-restore'), () => {
      expect(backendsOf(nerdctlChain())).toEqual(['bridge:nftables', 'portmap:nftables', 'firewall:nftables', 'tuning:nftables'])
      expect(programsRefusal(nerdctlChain())).toBeUndefined()
    })
  })

  it('a half-installed iptables: iptables, and the missing program is named', () => {
    withPath(without('iptables-save'), () => {
      expect(backendsOf(nerdctlChain())[0]).toBe('bridge:iptables')
      expect(programsRefusal(nerdctlChain())).toMatch(/^ctrnet: program "iptables-save" : not found in PATH \(install the Debian package iptables\); needed by the bridge plugin of network "n1"$/)
    })
  })

  it('named nftables: every plugin on nftables even where iptables is installed; iptables-save is not required', () => {
    const named = nerdctlChain()
    named[0]!.ipMasqBackend = 'nftables'
    named[1]!.backend = 'nftables'
    withPath(ALL, () => expect(backendsOf(named)).toEqual(['bridge:nftables', 'portmap:nftables', 'firewall:nftables', 'tuning:nftables']))
    withPath(without('iptables-save', 'iptables-restore'), () => expect(programsRefusal(named)).toBeUndefined())
    withPath(without('nft'), () => expect(programsRefusal(named)).toMatch(/^ctrnet: program "nft" : .*needed by the bridge plugin of network "n1"$/))
  })

  it('named iptables where only nft is installed: iptables, its programs required', () => {
    const named = nerdctlChain()
    named[0]!.ipMasqBackend = 'iptables'
    named[1]!.backend = 'iptables'
    withPath(without('iptables-save', 'iptables-restore'), () => {
      expect(backendsOf(named)).toEqual(['bridge:iptables', 'portmap:iptables', 'firewall:iptables', 'tuning:iptables'])
      expect(programsRefusal(named)).toMatch(/^ctrnet: program "iptables-save" : /)
    })
  })

  it('bridge and portmap each follow their own field or the reference rule; firewall follows the first one named', () => {
    const mixed = nerdctlChain()
    mixed[0]!.ipMasqBackend = 'nftables'
    withPath(ALL, () => expect(backendsOf(mixed)).toEqual(['bridge:nftables', 'portmap:iptables', 'firewall:nftables', 'tuning:nftables']))
    const mixed2 = nerdctlChain()
    mixed2[1]!.backend = 'nftables'
    withPath(ALL, () => expect(backendsOf(mixed2)).toEqual(['bridge:iptables', 'portmap:nftables', 'firewall:nftables', 'tuning:nftables']))
  })

  it('firewall with "backend": "iptables" (the reference\'s iptables-or-firewalld) stays on iptables', () => {
    const c = nerdctlChain()
    c[0]!.ipMasqBackend = 'nftables'
    c[1]!.backend = 'nftables'
    c[2]!.backend = 'iptables'
    withPath(ALL, () => expect(backendsOf(c)).toEqual(['bridge:nftables', 'portmap:nftables', 'firewall:iptables', 'tuning:nftables']))
  })

  it('--internal (bridge without ipMasq names it): the firewall follows; the bridge needs no firewall program', () => {
    const c = [{type: 'bridge', bridge: 'br-n1', ipMasqBackend: 'nftables', hairpinMode: true, ipam: IPAM}, {type: 'firewall', ingressPolicy: 'same-bridge'}]
    withPath(ALL, () => expect(backendsOf(c)).toEqual(['bridge:nftables', 'firewall:nftables']))
    // nft only for the firewall plugin: the bridge (no ipMasq) does not need it
    withPath(without('nft'), () => expect(programsRefusal(c)).toMatch(/needed by the firewall plugin of network "n1"$/))
    withPath(without('nft'), () => expect(programsRefusal(c.slice(0, 1))).toBeUndefined())
  })

  it('overlay: its masquerade follows the backend its portmap names', () => {
    const c = [
      {type: 'ctrnet-overlay', etcd: 'http://10.0.0.10:2379', vni: 42, subnet: '10.200.0.0/16', hostSubnetSize: 24, bridge: 'ovl42'},
      {type: 'portmap', capabilities: {portMappings: true}, backend: 'nftables'},
      {type: 'firewall', ingressPolicy: 'same-bridge'},
    ]
    withPath(ALL, () => expect(backendsOf(c)).toEqual(['ctrnet-overlay:nftables', 'portmap:nftables', 'firewall:nftables']))
    c[1]!.backend = undefined
    withPath(ALL, () => expect(backendsOf(c)).toEqual(['ctrnet-overlay:iptables', 'portmap:iptables', 'firewall:iptables']))
  })
})

// ---- the runtime's transactions ----------------------------------------------

describe('one transaction per backend a chain uses', () => {
  /** Backends that record what is done with their transactions. */
  function recording(failRelease?: FirewallBackendName) {
    const events: string[] = []
    const tx = (name: string, closed: boolean): FirewallTx => {
      const change = async () => {
        if (closed) throw new Error(`${name}: closed`)
        events.push(`${name} change`)
      }
      return {
        masquerade: change,
        removeMasquerade: change,
        publishPorts: change,
        unpublishPorts: change,
        checkPorts: async () => undefined,
        acceptForwarding: change,
        removeForwarding: change,
        checkForwarding: async () => undefined,
        commit: async () => void events.push(`${name} commit`),
        release: () => {
          events.push(`${name} release`)
          if (name === failRelease) throw new Error(`${name} release failed`)
        },
      }
    }
    const backendOf = (name: FirewallBackendName): FirewallBackend => ({
      name,
      programs: [],
      open: () => (events.push(`${name} open`), tx(name, false)),
      closed: () => (events.push(`${name} closed`), tx(name, true)),
    })
    return {events, backendOf}
  }

  it('opens a backend\'s transaction when a plugin first asks for it, once', () => {
    const {events, backendOf} = recording()
    const fw = new ChainFirewalls({}, backendOf)
    expect(fw.label).toBe('iptables')
    expect(events).toEqual([])
    expect(fw.tx('nftables')).toBe(fw.tx('nftables'))
    expect(events).toEqual(['nftables open'])
    expect(fw.label).toBe('nftables')
  })

  it('commits in a fixed order (iptables, then nftables) whatever the order of use, and releases them all', async () => {
    const {events, backendOf} = recording()
    const fw = new ChainFirewalls({}, backendOf)
    await fw.tx('nftables').masquerade({network: 'n1', containerId: 'c1', addresses: []})
    await fw.tx('iptables').publishPorts({network: 'n1', containerId: 'c1', ports: [], addresses: {}, hairpinMasquerade: {kind: 'none'}})
    expect(fw.label).toBe('iptables and nftables')
    await fw.commit()
    fw.release()
    expect(events).toEqual(['nftables open', 'nftables change', 'iptables open', 'iptables change', 'iptables commit', 'nftables commit', 'nftables release', 'iptables release'])
  })

  it('a release that fails does not keep the others', () => {
    const {events, backendOf} = recording('iptables')
    const fw = new ChainFirewalls({}, backendOf)
    fw.tx('iptables')
    fw.tx('nftables')
    expect(() => fw.release()).toThrow('iptables release failed')
    expect(events).toEqual(['iptables open', 'nftables open', 'iptables release', 'nftables release'])
  })

  it('CHECK and STATUS get closed transactions of the right backend', async () => {
    const {events, backendOf} = recording()
    const fw = new ChainFirewalls({closed: true}, backendOf)
    await expect(fw.tx('nftables').masquerade({network: 'n1', containerId: 'c1', addresses: []})).rejects.toThrow('nftables: closed')
    expect(await fw.tx('nftables').checkPorts({network: 'n1', containerId: 'c1', ports: [], addresses: {}, hairpinMasquerade: {kind: 'none'}})).toBeUndefined()
    expect(events).toEqual(['nftables closed'])
  })
})
