/**
 * Issue 5: bad input at every boundary gets one clear error line and changes
 * nothing: no file, link, address or rule. Each case runs the CLI inside a
 * throwaway host netns against private dirs, and compares a full snapshot
 * of those before and after.
 */
import {chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {createNetns, destroyNetns, netnsPath, nsTry, useNetnsCleanup} from '../helpers/netns.js'
import {makeLab, nerdctlChain, type Lab} from './reliability-lib.js'

useNetnsCleanup(afterAll)

let lab: Lab
let ctr: string
let pluginDir: string
const tried: string[] = []

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (!existsSync(dir)) return out
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n)
      const st = statSync(p, {throwIfNoEntry: false})
      if (n === '.nerdctl.lock' || n === 'lock') continue // taking a lock is not a change
      if (!st) out[p] = '<dangling>'
      else if (st.isDirectory()) walk(p)
      else out[p] = st.size > 4096 ? `<${st.size} bytes>` : readFileSync(p, 'utf8')
    }
  }
  walk(dir)
  return out
}

async function snapshot(): Promise<string> {
  const links = await nsTry(lab.host, ['ip', '-o', 'link', 'show'])
  const addrs = await nsTry(lab.host, ['ip', '-o', 'addr', 'show'])
  const ctrLinks = await nsTry(ctr, ['ip', '-o', 'addr', 'show'])
  const ipt = (await nsTry(lab.host, ['iptables-save'])).stdout
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, ''))
  // names, masters and addresses; not carrier flags or DAD state, which settle on their own
  const norm = (t: string) =>
    t
      .replace(/link\/ether \S+/g, '')
      .replace(/<[^>]*>/g, '')
      .replace(/state \S+/g, '')
      .replace(/ tentative/g, '')
  return JSON.stringify({
    files: tree(lab.dir),
    links: norm(links.stdout),
    addrs: norm(addrs.stdout),
    ctr: norm(ctrLinks.stdout),
    ipt,
  })
}

/** A conflist file for one case, removed again after it. */
function withConf(name: string, content: string | Buffer): () => void {
  const p = join(lab.conf, name)
  writeFileSync(p, content)
  return () => rmSync(p, {force: true})
}

beforeAll(async () => {
  lab = await makeLab('bad', {subnet: '10.81.0.0/24'})
  ctr = await createNetns('rlb', 'ctr')
  // hostile external plugins (fixed scripts, run through the CNI protocol)
  pluginDir = join(lab.dir, 'plugins')
  mkdirSync(pluginDir)
  const plugins: Record<string, string> = {
    garbage: '#!/bin/sh\necho "<html>not a result</html>"\n',
    silent: '#!/bin/sh\nexit 1\n',
    hang: '#!/bin/sh\nexec sleep 600\n',
    wrongresult: '#!/bin/sh\necho \'{"cniVersion":"1.0.0","ips":"nope"}\'\n',
  }
  for (const [n, body] of Object.entries(plugins)) {
    writeFileSync(join(pluginDir, n), body)
    chmodSync(join(pluginDir, n), 0o755)
  }
  // prove the baseline works: one real ADD/DEL leaves the bridge behind, as always
  const add = await lab.cli(['cni', 'add', lab.net, netnsPath(ctr), '--container-id', 'warm'])
  expect(add.code, add.stderr).toBe(0)
  const del = await lab.cli(['cni', 'del', lab.net, netnsPath(ctr), '--container-id', 'warm'])
  expect(del.code, del.stderr).toBe(0)
})

afterAll(async () => {
  await destroyNetns(ctr)
  await lab?.cleanup()
  // the figure docs/reliability.md quotes
  console.log(`bad inputs tried: ${tried.length}`)
})

interface Case {
  name: string
  args: () => string[]
  setup?: () => (() => void) | void
  env?: Record<string, string>
  stderr: RegExp
}

const add = (net: string, extra: string[] = []) => () => ['cni', 'add', net, netnsPath(ctr), '--container-id', 'bad1', ...extra]
const plugin = (p: object, name = 'hostile') => () =>
  withConf(`${name}.conflist`, JSON.stringify({cniVersion: '1.0.0', name, plugins: [p]}))
const bridgeWith = (over: Record<string, unknown>, name = 'hostile') => () => {
  const c = nerdctlChain(name, 'br-hostile', '10.82.0.0/24', '10.82.0.1', join(lab.data)) as {plugins: Array<Record<string, unknown>>}
  Object.assign(c.plugins[0], over)
  return withConf(`${name}.conflist`, JSON.stringify(c))
}
const ipamWith = (over: Record<string, unknown>) => () => {
  const c = nerdctlChain('hostile', 'br-hostile', '10.82.0.0/24', '10.82.0.1', join(lab.data)) as {plugins: Array<Record<string, Record<string, unknown>>>}
  Object.assign(c.plugins[0].ipam, over)
  return withConf('hostile.conflist', JSON.stringify(c))
}

const cases: Case[] = [
  // malformed or hostile conflists
  {name: 'conflist is not JSON', setup: () => withConf('hostile.conflist', '{"name": "hostile", '), args: add('hostile'), stderr: /not found|invalid JSON/},
  {name: 'conflist is a JSON array', setup: () => withConf('hostile.conflist', '[1,2]'), args: add('hostile'), stderr: /not found/},
  {name: 'plugins is not a list', setup: () => withConf('hostile.conflist', '{"cniVersion":"1.0.0","name":"hostile","plugins":{}}'), args: add('hostile'), stderr: /not found/},
  {name: 'a plugin has no type', setup: () => withConf('hostile.conflist', '{"cniVersion":"1.0.0","name":"hostile","plugins":[{"bridge":"x"}]}'), args: add('hostile'), stderr: /not found/},
  {name: 'plugin type with path traversal', setup: plugin({type: '../../../bin/sh'}), args: add('hostile'), stderr: /invalid plugin type/},
  {name: 'plugin type is an absolute path', setup: plugin({type: '/bin/sh'}), args: add('hostile'), stderr: /invalid plugin type/},
  {name: 'unknown plugin type', setup: plugin({type: 'nosuchplugin'}), args: add('hostile'), stderr: /failed to find plugin "nosuchplugin"/},
  {name: 'unsupported cniVersion', setup: () => withConf('hostile.conflist', '{"cniVersion":"9.9.9","name":"hostile","plugins":[{"type":"loopback"}]}'), args: add('hostile'), stderr: /incompatible CNI versions/},
  {name: 'cniVersion is not a version', setup: () => withConf('hostile.conflist', '{"cniVersion":"latest","name":"hostile","plugins":[{"type":"loopback"}]}'), args: add('hostile'), stderr: /version/},
  {name: 'network name with a slash', setup: () => withConf('hostile.conflist', '{"cniVersion":"1.0.0","name":"../../etc","plugins":[{"type":"loopback"}]}'), args: add('../../etc'), stderr: /invalid characters found in network name|not found/},
  {name: 'huge conflist (2 MiB)', setup: () => withConf('hostile.conflist', JSON.stringify({cniVersion: '1.0.0', name: 'hostile', plugins: [{type: 'loopback', pad: 'x'.repeat(2 << 20)}]})), args: add('hostile'), stderr: /not found|larger than/},
  {name: 'bridge name too long', setup: bridgeWith({bridge: 'br-0123456789abcdef'}), args: add('hostile'), stderr: /bridge|name/i},
  {name: 'bridge name injects an ip command', setup: bridgeWith({bridge: 'x\nlink del lo'}), args: add('hostile'), stderr: /bridge|name|invalid/i},
  {name: 'mtu is a string', setup: bridgeWith({mtu: '1500'}), args: add('hostile'), stderr: /mtu|json|type|invalid/i},
  {name: 'mtu out of range', setup: bridgeWith({mtu: 1_000_000}), args: add('hostile'), stderr: /mtu|invalid|range/i},
  {name: 'isGateway is a string', setup: bridgeWith({isGateway: 'yes'}), args: add('hostile'), stderr: /isGateway|bool|invalid|type/i},
  {name: 'ipam subnet is not a CIDR', setup: ipamWith({ranges: [[{subnet: '10.82.0.0/33'}]]}), args: add('hostile'), stderr: /subnet|invalid|CIDR/i},
  {name: 'ipam rangeStart outside the subnet', setup: ipamWith({ranges: [[{subnet: '10.82.0.0/24', rangeStart: '10.99.0.5'}]]}), args: add('hostile'), stderr: /range|subnet|invalid/i},
  {name: 'ipam dataDir is relative with ..', setup: ipamWith({dataDir: '../../../../etc'}), args: add('hostile'), stderr: /dataDir|absolute|invalid/i},
  {name: 'ipam has no type', setup: ipamWith({type: undefined}), args: add('hostile'), stderr: /IPAM|ipam|type/},
  // hostile results from external plugins
  {name: 'external plugin writes garbage', setup: plugin({type: 'garbage'}), args: add('hostile'), stderr: /failed to decode plugin result/},
  {name: 'external plugin exits 1 with no JSON', setup: plugin({type: 'silent'}), args: add('hostile'), stderr: /netplugin failed|exit status 1/},
  {name: 'external plugin hangs', setup: plugin({type: 'hang'}), args: add('hostile'), env: {CTRNET_PLUGIN_TIMEOUT_MS: '1500'}, stderr: /timed out/},
  {name: 'external plugin returns a malformed result', setup: plugin({type: 'wrongresult'}), args: add('hostile'), stderr: /not a list|decode/},
  // flags out of range
  {name: 'host port 0', args: add('rlbad', ['-p', '0:80']), stderr: /invalid --publish: /},
  {name: 'host port 70000', args: add('rlbad', ['-p', '70000:80']), stderr: /invalid --publish: /},
  {name: 'port mapping with a bad protocol', args: add('rlbad', ['-p', '80:80/icmp']), stderr: /invalid --publish: /},
  {name: 'port mapping with a bad host IP', args: add('rlbad', ['-p', '300.1.1.1:80:80']), stderr: /invalid --publish: /},
  {name: 'ifname too long', args: add('rlbad', ['--ifname', 'eth0123456789abc']), stderr: /interface name/},
  {name: 'ifname with a slash', args: add('rlbad', ['--ifname', 'a/b']), stderr: /interface name/},
  {name: 'container id with a slash', args: () => ['cni', 'add', 'rlbad', netnsPath(ctr), '--container-id', '../x'], stderr: /containerID/},
  {name: 'malformed CNI_ARGS', args: add('rlbad', ['--cni-args', 'novalue']), stderr: /CNI_ARGS/},
  {name: 'capability args not JSON', args: add('rlbad', ['--cap-args', '{nope']), stderr: /--cap-args/},
  {name: 'requested IP is not an IP', args: add('rlbad', ['--ip', '10.81.0.999']), stderr: /invalid --ip: must be an IPv4 or IPv6 address/},
  {name: 'requested IP outside the subnet', args: add('rlbad', ['--ip', '10.99.0.5']), stderr: /10\.99\.0\.5|range|subnet/},
  {name: 'unknown --cni-mode', args: add('rlbad', ['--cni-mode', 'fast']), stderr: /cni-mode|Expected/},
  {name: 'bad CTRNET_PLUGIN_TIMEOUT_MS', args: add('rlbad'), env: {CTRNET_PLUGIN_TIMEOUT_MS: '-5'}, stderr: /CTRNET_PLUGIN_TIMEOUT_MS/},
  {name: 'netns path does not exist', args: () => ['cni', 'add', 'rlbad', '/var/run/netns/does-not-exist-rl', '--container-id', 'bad2'], stderr: /netns|namespace|no such file|does-not-exist/i},
  {name: 'netns path is a regular file', args: () => ['cni', 'add', 'rlbad', '/etc/hostname', '--container-id', 'bad3'], stderr: /netns|namespace|invalid/i},
  {name: 'unknown network', args: add('nosuchnet'), stderr: /network "nosuchnet" not found/},
  {
    name: 'a symlink where the cache entry is written',
    setup: () => {
      mkdirSync(join(lab.cache, 'results'), {recursive: true})
      const victim = join(lab.dir, 'victim')
      writeFileSync(victim, 'precious')
      const link = join(lab.cache, 'results', 'rlbad-bad1-eth0')
      symlinkSync(victim, link)
      return () => {
        rmSync(link, {force: true})
        rmSync(victim, {force: true})
      }
    },
    args: add('rlbad'),
    stderr: /symlink/,
  },
  // network config surface
  {name: 'network name -x', args: () => ['network', 'create', '--', '-x'], stderr: /name|invalid/i},
  {name: 'network name a', args: () => ['network', 'create', 'a'], stderr: /name|invalid/i},
  {name: 'network name ../evil', args: () => ['network', 'create', '../evil'], stderr: /name|invalid/i},
  {name: 'network name a/b', args: () => ['network', 'create', 'a/b'], stderr: /name|invalid/i},
  {name: 'network name with a space', args: () => ['network', 'create', 'a b'], stderr: /name|invalid/i},
  {name: 'subnet with host bits set', args: () => ['network', 'create', '--subnet', '10.244.0.1/16', 'hb'], stderr: /10\.244\.0\.0\/16/},
  {name: 'subnet not a CIDR', args: () => ['network', 'create', '--subnet', '10.244.0.0/40', 'hb'], stderr: /subnet|CIDR|invalid/i},
  {name: 'gateway outside the subnet', args: () => ['network', 'create', '--subnet', '10.244.0.0/16', '--gateway', '10.1.0.1', 'gw'], stderr: /gateway/i},
  {name: 'gateway without subnet', args: () => ['network', 'create', '--gateway', '10.1.0.1', 'gw'], stderr: /subnet/i},
  {name: 'subnet overlapping an existing network', args: () => ['network', 'create', '--subnet', '10.81.0.0/16', 'ov'], stderr: /overlap|conflict/i},
  {name: 'existing network name', args: () => ['network', 'create', lab.net], stderr: /exists/i},
  {name: 'unknown driver', args: () => ['network', 'create', '-d', 'ipsec', 'drv'], stderr: /driver/i},
  {name: 'unknown option', args: () => ['network', 'create', '-o', 'nosuch=1', 'opt'], stderr: /option|unsupported|nosuch/i},
  {
    name: 'unwritable config dir',
    setup: () => {
      writeFileSync(join(lab.dir, 'notadir'), 'x')
      return () => rmSync(join(lab.dir, 'notadir'), {force: true})
    },
    args: () => ['network', 'create', 'unw', '--cni-netconfpath', join(lab.dir, 'notadir', 'sub')],
    stderr: /notadir|directory|ENOTDIR|EEXIST|not/i,
  },
  {name: 'rm of an unknown network', args: () => ['network', 'rm', 'nosuchnet'], stderr: /nosuchnet/},
  {name: 'rm of a network not made by nerdctl', args: () => ['network', 'rm', lab.net], stderr: /managed outside|cannot be removed/i},
  {name: 'rm of host', args: () => ['network', 'rm', 'host'], stderr: /pseudo network/},
]

describe('bad input changes nothing', () => {
  it('has at least 40 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40)
  })

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const undo = c.setup?.()
    try {
      const before = await snapshot()
      const r = await lab.cli([...c.args()], {...c.env, CNI_PATH: pluginDir})
      tried.push(c.name)
      expect(r.code, `stdout: ${r.stdout}`).not.toBe(0)
      const lines = r.stderr.trim().split('\n').filter((l) => !/^\s*$/.test(l) && !l.startsWith('ctrnet: warning: '))
      expect(lines.length, r.stderr).toBe(1)
      expect(lines[0]).toMatch(/^ctrnet: /)
      expect(r.stderr).not.toMatch(/\n\s+at /) // no stack trace
      expect(r.stderr).toMatch(c.stderr)
      const after = await snapshot()
      if (after !== before) {
        const a = JSON.parse(after), b = JSON.parse(before)
        const diffs: string[] = []
        for (const k of Object.keys(a)) if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) diffs.push(`${k}: before ${JSON.stringify(b[k]).slice(0, 600)} after ${JSON.stringify(a[k]).slice(0, 600)}`)
        expect.fail(`state changed: ${diffs.join('\n')}`)
      }
    } finally {
      if (typeof undo === 'function') undo()
    }
  })
})
