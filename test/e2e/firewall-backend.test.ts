/**
 * Issue 22, "choosing the backend", through the CLI: `network create
 * --firewall-backend` writes the choice into the conflist (bridge
 * `ipMasqBackend`, portmap `backend`); without the flag on a host with
 * iptables the file is nerdctl's byte for byte; where the iptables programs
 * are missing, `auto` writes nftables. A network that names iptables still
 * attaches and detaches (cni add/del), its rules in iptables and none in
 * nftables, and it needs no nft.
 *
 * "The iptables programs are missing" is simulated with PATH: a temp dir of
 * symlinks to every program on the test's PATH except those named
 * iptables* and ip6tables* (the CLI looks programs up on PATH, as it runs
 * them). No ADD goes through the nftables backend here (its own tests do
 * that).
 *
 * Everything runs in a throwaway host netns with private dirs (containerd-harness's HostNs).
 */
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {HostNs, sh, type RunResult} from './containerd-harness.js'
import {NO_IPTABLES, pathHiding} from './firewall-lib.js'
import {FOO} from '../unit/nerdctl-files.js'
import {defaultCreateOptions, renderNetwork} from '../../src/netconf/render.js'

let host: HostNs
const CTR = `h22s-ctr-${process.pid}`

/** The CLI in the host netns, with no firewall backend from the environment unless given. */
const cli = (args: string[], env: NodeJS.ProcessEnv = {}): RunResult => host.cli(args, {env: {CTRNET_FIREWALL_BACKEND: '', ...env}})

function ok(r: RunResult): RunResult {
  expect(r.code, r.stdout + r.stderr).toBe(0)
  return r
}

const NO_NFT = /^nft$/

/** nerdctl's file for a network created with these options (render.ts, checked against nerdctl by the conformance tests). */
const nerdctlText = (name: string, subnet: string) => renderNetwork(defaultCreateOptions(name, {subnets: [subnet]}), {usedSubnets: []}).text

/** The fields the backend adds, taken out again. */
const withoutFields = (text: string, backend: string) =>
  text.replace(`      "ipMasqBackend": "${backend}",\n`, '').replace(`,\n      "backend": "${backend}"`, '')

beforeAll(() => {
  host = new HostNs('h22s')
  sh('ip', ['netns', 'add', CTR])
})

afterAll(() => {
  sh('ip', ['netns', 'del', CTR])
  host?.cleanup()
})

describe('network create --firewall-backend', () => {
  it('without the flag, on a host with iptables: nerdctl\'s file byte for byte', () => {
    ok(cli(['network', 'create', 'foo']))
    expect(readFileSync(host.confPath('foo'), 'utf8')).toBe(FOO)
  })

  it('--firewall-backend iptables writes the fields; cni add and del work, the rules in iptables only, without nft', () => {
    ok(cli(['network', 'create', '--subnet', '10.97.2.0/24', '--firewall-backend', 'iptables', 'fwi']))
    const file = host.confPath('fwi')
    const text = readFileSync(file, 'utf8')
    const conf = JSON.parse(text) as {plugins: Array<Record<string, unknown>>}
    expect(conf.plugins[0]).toMatchObject({type: 'bridge', ipMasq: true, ipMasqBackend: 'iptables'})
    expect(conf.plugins[1]).toEqual({type: 'portmap', capabilities: {portMappings: true}, backend: 'iptables'})
    expect(withoutFields(text, 'iptables')).toBe(nerdctlText('fwi', '10.97.2.0/24'))
    host.patchDataDir(file)

    // nft is hidden: a chain on iptables does not need it
    const noNft = pathHiding(host.dir, 'no-nft', NO_NFT)
    ok(cli(['cni', 'add', 'fwi', `/var/run/netns/${CTR}`, '--container-id', 'h22s-fwi-1', '-p', '8080:80'], {PATH: noNft}))
    const ipt = host.iptables()
    expect(ipt).toMatch(/-A CNI-DN-[0-9a-f]+ .*--dport 8080 .*-j DNAT --to-destination 10\.97\.2\.\d+:80/)
    expect(ipt).toContain('id: \\"h22s-fwi-1\\"')
    // the bridge's masquerade and the firewall plugin's accept rules, on iptables too
    expect(ipt).toMatch(/-A POSTROUTING -s 10\.97\.2\.\d+\/32 .*-j CNI-[0-9a-f]+/)
    expect(ipt).toMatch(/-A CNI-FORWARD .*10\.97\.2\.\d+/)
    expect(host.leases('fwi')).toHaveLength(1)
    // nothing went to nftables: its only tables are iptables' own (iptables-nft keeps its tables there)
    const tables = host.exec('nft', ['list', 'tables'])
    expect(tables.code, tables.stderr).toBe(0)
    for (const t of tables.stdout.trim().split('\n').filter(Boolean)) expect(t).toMatch(/^table ip6? (filter|nat|mangle|raw|security)$/)

    ok(cli(['cni', 'del', 'fwi', `/var/run/netns/${CTR}`, '--container-id', 'h22s-fwi-1'], {PATH: noNft}))
    const after = host.iptables()
    expect(after).not.toContain('h22s-fwi-1')
    expect(after).not.toMatch(/-A CNI-DN-/)
    expect(host.leases('fwi')).toEqual([])
  })

  it('where the iptables programs are missing, auto writes nftables; a named backend or CTRNET_FIREWALL_BACKEND wins', () => {
    const noIptables = pathHiding(host.dir, 'no-iptables', NO_IPTABLES)
    // the simulation holds: the CLI's PATH has nft and no iptables program
    expect(readdirSync(noIptables)).toContain('nft')
    expect(readdirSync(noIptables).filter((n) => NO_IPTABLES.test(n))).toEqual([])

    ok(cli(['network', 'create', '--subnet', '10.97.3.0/24', 'fwn'], {PATH: noIptables}))
    const text = readFileSync(host.confPath('fwn'), 'utf8')
    const conf = JSON.parse(text) as {plugins: Array<Record<string, unknown>>}
    expect(conf.plugins[0]!.ipMasqBackend).toBe('nftables')
    expect(conf.plugins[1]!.backend).toBe('nftables')
    expect(withoutFields(text, 'nftables')).toBe(nerdctlText('fwn', '10.97.3.0/24'))

    ok(cli(['network', 'create', '--subnet', '10.97.4.0/24', '--firewall-backend', 'iptables', 'fwx'], {PATH: noIptables}))
    expect(JSON.parse(readFileSync(host.confPath('fwx'), 'utf8')).plugins[1].backend).toBe('iptables')

    ok(cli(['network', 'create', '--subnet', '10.97.5.0/24', 'fwe'], {CTRNET_FIREWALL_BACKEND: 'nftables'}))
    expect(JSON.parse(readFileSync(host.confPath('fwe'), 'utf8')).plugins[0].ipMasqBackend).toBe('nftables')
    ok(cli(['network', 'create', '--subnet', '10.97.6.0/24', '--firewall-backend', 'auto', 'fwa'], {CTRNET_FIREWALL_BACKEND: 'nftables'}))
    expect(readFileSync(host.confPath('fwa'), 'utf8')).toBe(nerdctlText('fwa', '10.97.6.0/24'))
  })

  it('a value that is no backend is refused in one line, and nothing is written', () => {
    const r = cli(['network', 'create', '--subnet', '10.97.7.0/24', '--firewall-backend', 'nft', 'fwbad'])
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim()).toBe('ctrnet: --firewall-backend : must be auto, iptables or nftables, not "nft"')
    const e = cli(['network', 'create', '--subnet', '10.97.7.0/24', 'fwbad'], {CTRNET_FIREWALL_BACKEND: 'ebtables'})
    expect(e.stderr.trim()).toBe('ctrnet: CTRNET_FIREWALL_BACKEND : must be auto, iptables or nftables, not "ebtables"')
    expect(existsSync(host.confPath('fwbad'))).toBe(false)
  })
})
