/**
 * `network create` / `rm` / `prune` never destroy a bridge link ctrnet did not
 * create for the network (issue 9, part 4). Every case runs the CLI as a
 * process inside its own throwaway network namespace (bown-*), with a private
 * config dir, cache dir and /var/lib (bind-mounted in the private mount
 * namespace `ip netns exec` gives), and asserts the kernel's links there with
 * `ip -o link show`. containerd is pointed at a socket that does not exist, so
 * rm/prune find no users.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, lstatSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {createNetns, destroyNetns, netnsPath, useNetnsCleanup} from '../helpers/netns.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = process.env.CTRNET_TEST_CLI || join(ROOT, 'bin', 'run.js')

/** containerd's 10-containerd-net.conflist as its install-cni script writes it. */
const CONTAINERD_NET = `{
  "cniVersion": "1.0.0",
  "name": "containerd-net",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "promiscMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [
          [{
            "subnet": "10.88.0.0/16"
          }],
          [{
            "subnet": "2001:4860:4860::/64"
          }]
        ],
        "routes": [
          { "dst": "0.0.0.0/0" },
          { "dst": "::/0" }
        ]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
`

const OPT = 'com.docker.network.bridge.name'

interface Res {
  code: number
  stdout: string
  stderr: string
}

let tmp: string
let ns: string
let dir: string
let cache: string
let varlib: string
let seq = 0

useNetnsCleanup(afterAll)

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bown-e2e-'))
})

afterAll(() => {
  if (tmp) rmSync(tmp, {recursive: true, force: true})
})

beforeEach(async () => {
  ns = await createNetns('bown', 'host')
  const base = join(tmp, `case${seq++}`)
  dir = join(base, 'net.d')
  cache = join(base, 'cache')
  varlib = join(base, 'varlib')
  for (const d of [dir, cache, join(varlib, 'cni')]) mkdirSync(d, {recursive: true})
})

afterEach(async () => {
  await destroyNetns(ns)
})

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** The CLI inside the case's netns, with our config, cache and /var/lib (host-local's default dataDir). */
function cli(args: string[]): Res {
  const r = spawnSync(
    'ip',
    [
      'netns', 'exec', ns, 'sh', '-c', 'mount --bind "$0" /var/lib && exec "$@"', varlib,
      process.execPath, CLI, ...args, '--cni-netconfpath', dir, '--cni-cachedir', cache,
    ],
    {encoding: 'utf8', input: '', env: {...process.env, CONTAINERD_ADDRESS: join(tmp, 'no-containerd.sock'), DEBUG: ''}},
  )
  return {code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr}
}

/** Link names in the case's netns, from the kernel (`ip -o link show`); throws when ip fails. */
function links(): string[] {
  return must('ip', ['-n', ns, '-o', 'link', 'show'])
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1]!.trim().split('@')[0]!)
}

function addBridge(name: string): void {
  must('ip', ['-n', ns, 'link', 'add', name, 'type', 'bridge'])
  expect(links()).toContain(name)
}

/** Every file under dir with its content (the lock file aside: locking creates it). */
function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (p: string) => {
    for (const n of readdirSync(p).sort()) {
      const f = join(p, n)
      if (n === '.nerdctl.lock') continue
      if (lstatSync(f).isDirectory()) {
        out[f + '/'] = ''
        walk(f)
      } else out[f] = readFileSync(f, 'utf8')
    }
  }
  walk(d)
  return out
}

const ownedDir = () => join(dir, '.ctrnet', 'owned-bridges')
const owned = () => (existsSync(ownedDir()) ? readdirSync(ownedDir()) : [])
const conflist = (name: string, namespace = 'default') => join(dir, namespace, `nerdctl-${name}.conflist`)

describe("containerd's cni0", () => {
  it('create refuses the bridge of 10-containerd-net, naming that network and file; nothing is written', () => {
    writeFileSync(join(dir, '10-containerd-net.conflist'), CONTAINERD_NET)
    addBridge('cni0')
    const before = snapshot(dir)
    const r = cli(['network', 'create', 'shared', '-o', `${OPT}=cni0`, '--subnet', '10.150.0.0/24'])
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: `ctrnet: network create shared : bridge "cni0" is already used by network "containerd-net" (${join(dir, '10-containerd-net.conflist')})\n`,
    })
    expect(snapshot(dir)).toEqual(before)
    expect(links()).toContain('cni0')
  })

  it('the incident: a network made on an existing cni0 (no config named it yet); rm and prune leave cni0', () => {
    addBridge('cni0')
    const c = cli(['network', 'create', 'shared', '-o', `${OPT}=cni0`, '--subnet', '10.150.0.0/24'])
    expect(c.code).toBe(0)
    expect(c.stderr).toBe(
      'ctrnet: warning: network "shared": bridge "cni0" already exists on this host and no network config names it; the network will share it and network rm will leave it\n',
    )
    expect(owned()).toEqual([])
    // containerd's config appears; its network uses cni0
    writeFileSync(join(dir, '10-containerd-net.conflist'), CONTAINERD_NET)
    const r = cli(['network', 'rm', 'shared'])
    expect(links()).toContain('cni0')
    expect(r).toEqual({
      code: 0,
      stdout: 'shared\n',
      stderr: 'ctrnet: warning: network "shared": bridge "cni0" was not created by ctrnet for this network; left in place\n',
    })
    expect(existsSync(conflist('shared'))).toBe(false)
    expect(links()).toContain('cni0')
    expect(readFileSync(join(dir, '10-containerd-net.conflist'), 'utf8')).toBe(CONTAINERD_NET)

    // prune shares the code: the same refusal to delete
    rmSync(join(dir, '10-containerd-net.conflist'))
    expect(cli(['network', 'create', 'shared2', '-o', `${OPT}=cni0`, '--subnet', '10.150.0.0/24']).code).toBe(0)
    const p = cli(['network', 'prune', '-f'])
    expect(links()).toContain('cni0')
    expect(p).toEqual({
      code: 0,
      stdout: 'Deleted Networks:\nshared2\n\n',
      stderr: 'ctrnet: warning: network "shared2": bridge "cni0" was not created by ctrnet for this network; left in place\n',
    })
    expect(links()).toContain('cni0')
  })
})

describe('docker0: a link no config names', () => {
  it('create warns that the network will share it; rm and prune leave it', () => {
    addBridge('docker0')
    const c = cli(['network', 'create', 'dk', '-o', `${OPT}=docker0`, '--subnet', '10.151.0.0/24'])
    expect(c.code).toBe(0)
    expect(c.stdout).toMatch(/^[0-9a-f]{64}\n$/)
    expect(c.stderr).toBe(
      'ctrnet: warning: network "dk": bridge "docker0" already exists on this host and no network config names it; the network will share it and network rm will leave it\n',
    )
    expect(JSON.parse(readFileSync(conflist('dk'), 'utf8')).plugins[0].bridge).toBe('docker0')
    const r = cli(['network', 'rm', 'dk'])
    expect(links()).toContain('docker0')
    expect(r).toEqual({
      code: 0,
      stdout: 'dk\n',
      stderr: 'ctrnet: warning: network "dk": bridge "docker0" was not created by ctrnet for this network; left in place\n',
    })
    expect(links()).toContain('docker0')
  })

  it('a stale ownership record does not make a pre-existing link ours', () => {
    // ctrnet made "st" with its own bridge st0 (recorded) ...
    expect(cli(['network', 'create', 'st', '-o', `${OPT}=st0`, '--subnet', '10.152.0.0/24'])).toMatchObject({code: 0, stderr: ''})
    expect(owned()).toHaveLength(1)
    // ... its config went away behind our back (another tool), someone else made a link st0 ...
    rmSync(conflist('st'))
    addBridge('st0')
    // ... and "st" is made again on it: the link is not ours this time
    const c = cli(['network', 'create', 'st', '-o', `${OPT}=st0`, '--subnet', '10.152.0.0/24'])
    expect(c.code).toBe(0)
    expect(c.stderr).toMatch(/^ctrnet: warning: network "st": bridge "st0" already exists on this host and no network config names it;[^\n]*\n$/)
    expect(owned()).toEqual([])
    const r = cli(['network', 'rm', 'st'])
    expect(links()).toContain('st0')
    expect(r.stderr).toBe(
      'ctrnet: warning: network "st": bridge "st0" was not created by ctrnet for this network; left in place\n',
    )
    expect(links()).toContain('st0')
  })
})

describe('a bridge shared by two networks', () => {
  it('the second create is refused, in the same or another namespace, for a chosen or a derived name', () => {
    const n1 = cli(['network', 'create', 'n1', '-o', `${OPT}=sh0`, '--subnet', '10.153.0.0/24'])
    expect(n1).toMatchObject({code: 0, stderr: ''})
    const before = snapshot(dir)
    expect(cli(['network', 'create', 'n2', '-o', `${OPT}=sh0`, '--subnet', '10.154.0.0/24'])).toEqual({
      code: 1,
      stdout: '',
      stderr: `ctrnet: network create n2 : bridge "sh0" is already used by network "n1" (${conflist('n1')})\n`,
    })
    // another namespace's folder: the loader would not show n1 there, the kernel link is shared all the same
    expect(cli(['network', 'create', '-n', 'team2', 'n3', '-o', `${OPT}=sh0`, '--subnet', '10.155.0.0/24']).stderr).toBe(
      `ctrnet: network create n3 : bridge "sh0" is already used by network "n1" (${conflist('n1')})\n`,
    )
    // nerdctl's derived br-<id> of another network
    const d1 = cli(['network', 'create', 'd1']).stdout.trim()
    expect(d1).toMatch(/^[0-9a-f]{64}$/)
    const before2 = snapshot(dir)
    expect(cli(['network', 'create', 'd2', '-o', `${OPT}=br-${d1.slice(0, 12)}`]).stderr).toBe(
      `ctrnet: network create d2 : bridge "br-${d1.slice(0, 12)}" is already used by network "d1" (${conflist('d1')})\n`,
    )
    expect(snapshot(dir)).toEqual(before2)
    expect(Object.keys(before2).filter((f) => !(f in before))).toEqual([conflist('d1')])
  })

  it('with a hand-made second config naming the bridge, rm (and prune) of ours deletes the config and leaves the bridge', () => {
    expect(cli(['network', 'create', 'n1', '-o', `${OPT}=sh0`, '--subnet', '10.153.0.0/24'])).toMatchObject({code: 0, stderr: ''})
    expect(owned()).toHaveLength(1)
    addBridge('sh0')
    const hand = join(dir, '20-handmade.conflist')
    writeFileSync(
      hand,
      JSON.stringify({cniVersion: '1.0.0', name: 'handmade', plugins: [{type: 'bridge', bridge: 'sh0', ipam: {type: 'host-local', ranges: [[{subnet: '10.160.0.0/24'}]]}}]}),
    )
    const r = cli(['network', 'rm', 'n1'])
    expect(links()).toContain('sh0')
    expect(r).toEqual({
      code: 0,
      stdout: 'n1\n',
      stderr: `ctrnet: warning: network "n1": bridge "sh0" is also used by network "handmade" (${hand}); left in place\n`,
    })
    expect(existsSync(conflist('n1'))).toBe(false)
    expect(links()).toContain('sh0')
    expect(owned()).toEqual([])

    // the same through prune, with the second config in a namespace folder; an unparsable
    // config that mentions the bridge counts as a user too
    expect(cli(['network', 'create', 'p1', '-o', `${OPT}=sh1`, '--subnet', '10.156.0.0/24'])).toMatchObject({code: 0, stderr: ''})
    addBridge('sh1')
    mkdirSync(join(dir, 'other'))
    const broken = join(dir, 'other', 'broken.conflist')
    writeFileSync(broken, '{"name": "half", "plugins": [{"type": "bridge", "bridge": "sh1",')
    const p = cli(['network', 'prune', '-f'])
    expect(links()).toEqual(expect.arrayContaining(['sh0', 'sh1']))
    expect(p.stdout).toBe('Deleted Networks:\np1\n\n')
    expect(p.stderr).toContain(`ctrnet: warning: network "p1": bridge "sh1" is also used by the unreadable config ${broken}; left in place\n`)
    expect(links()).toEqual(expect.arrayContaining(['sh0', 'sh1']))
  })
})

describe('bridges ctrnet created are still deleted', () => {
  it('-o bridge.name=mybr0, brought up by cni add: rm deletes it; the conflist has nerdctl keys only', async () => {
    const c = cli(['network', 'create', 'mybrnet', '-o', `${OPT}=mybr0`, '--subnet', '10.157.0.0/24'])
    expect(c).toMatchObject({code: 0, stderr: ''})
    const conf = JSON.parse(readFileSync(conflist('mybrnet'), 'utf8'))
    expect(Object.keys(conf)).toEqual(['cniVersion', 'name', 'nerdctlID', 'plugins'])
    expect(owned()).toEqual([`${conf.nerdctlID}-mybr0`])
    const ctr = await createNetns('bown', 'ctr')
    try {
      const add = cli(['cni', 'add', 'mybrnet', netnsPath(ctr), '--container-id', 'bown-own-1'])
      expect(add.code, add.stderr).toBe(0)
      expect(links()).toContain('mybr0')
      const del = cli(['cni', 'del', 'mybrnet', netnsPath(ctr), '--container-id', 'bown-own-1'])
      expect(del.code, del.stderr).toBe(0)
    } finally {
      await destroyNetns(ctr)
    }
    expect(links()).toContain('mybr0')
    expect(cli(['network', 'rm', 'mybrnet'])).toEqual({code: 0, stdout: 'mybrnet\n', stderr: ''})
    expect(links()).not.toContain('mybr0')
    expect(owned()).toEqual([])
  })

  it("a default network's br-<id> is deleted by rm and by prune, as before", async () => {
    const id = cli(['network', 'create', 'plain', '--subnet', '10.158.0.0/24']).stdout.trim()
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    const ctr = await createNetns('bown', 'ctr')
    try {
      const add = cli(['cni', 'add', 'plain', netnsPath(ctr), '--container-id', 'bown-plain-1'])
      expect(add.code, add.stderr).toBe(0)
      expect(links()).toContain(`br-${id.slice(0, 12)}`)
      expect(cli(['cni', 'del', 'plain', netnsPath(ctr), '--container-id', 'bown-plain-1']).code).toBe(0)
    } finally {
      await destroyNetns(ctr)
    }
    expect(cli(['network', 'rm', 'plain'])).toEqual({code: 0, stdout: 'plain\n', stderr: ''})
    expect(links()).not.toContain(`br-${id.slice(0, 12)}`)

    const id2 = cli(['network', 'create', 'plain2']).stdout.trim()
    addBridge(`br-${id2.slice(0, 12)}`)
    expect(cli(['network', 'prune', '-f'])).toEqual({code: 0, stdout: 'Deleted Networks:\nplain2\n\n', stderr: ''})
    expect(links()).not.toContain(`br-${id2.slice(0, 12)}`)
  })
})
