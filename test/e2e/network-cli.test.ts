/**
 * `ctrnet network create/ls/inspect/rm/prune` as a process, against a temp
 * --cni-netconfpath, inside a throwaway network namespace (h1x-*) so that the
 * host's interfaces and routes do not shape subnet allocation and `rm`'s
 * bridge deletion only ever sees our links. containerd is pointed at a socket
 * path that does not exist (rm/prune then proceed, as the issue says).
 */
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {DEFAULT_BRIDGE_FILE, FOO} from '../unit/nerdctl-files.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = process.env.CTRNET_TEST_CLI || join(ROOT, 'bin', 'run.js')
const NS = `h1x-net-${process.pid}`
let tmp: string
let dir: string

interface Res {
  code: number
  stdout: string
  stderr: string
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
}

/**
 * Runs the CLI inside the test namespace with our config dir and a socket that does not exist.
 * As nobody it must run from a copy nobody can read (`cliPath`, see worldReadableCli): the
 * checkout may sit below a 0700 directory (a clone in `mktemp -d`), where nobody cannot
 * even load bin/run.js and would fail for that reason instead of the one under test.
 */
function cli(args: string[], opts: {input?: string; dir?: string; noDir?: boolean; as?: 'nobody'; cliPath?: string} = {}): Res {
  const global = opts.noDir ? [] : ['--cni-netconfpath', opts.dir ?? dir]
  const cmd = ['ip', 'netns', 'exec', NS]
  if (opts.as === 'nobody') {
    if (!opts.cliPath) throw new Error('cli as nobody needs cliPath: a world-readable copy (worldReadableCli)')
    cmd.push('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups')
  }
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), process.execPath, opts.cliPath ?? CLI, ...args, ...global], {
    encoding: 'utf8',
    input: opts.input ?? '',
    env: {...process.env, CONTAINERD_ADDRESS: join(tmp, 'no-containerd.sock'), HOME: tmp, DEBUG: ''},
  })
  return {code: r.status ?? 128, stdout: r.stdout, stderr: r.stderr}
}

/**
 * A copy of what bin/run.js loads at runtime, in a fresh 0755 dir under /tmp that
 * nobody can traverse and read: bin/ (the entry), dist/ (the bundle, its code cache
 * and the compiled modules), protos/ (containerd's .proto files), package.json and
 * oclif.manifest.json (oclif reads both from the package root). node_modules is
 * left out on purpose: the bundle carries every dependency except @grpc/* (and
 * typescript/ts-node, which oclif only looks for in development), and only the
 * containerd code loads those, which `network create` never reaches; the copy's
 * positive control (a `network ls` as nobody that must succeed) fails if that
 * ever changes. Returns the copied run.js and a remover.
 */
function worldReadableCli(): {cliPath: string; remove: () => void} {
  const pkg = resolve(dirname(CLI), '..')
  const base = mkdtempSync(join('/tmp', 'h1x-cli-'))
  try {
    chmodSync(base, 0o755)
    for (const entry of ['bin', 'dist', 'protos', 'package.json', 'oclif.manifest.json']) {
      const from = join(pkg, entry)
      if (!existsSync(from)) {
        if (entry === 'protos') continue // only the containerd commands need it
        throw new Error(`cannot copy the CLI: ${from} is missing (run npm run build)`)
      }
      cpSync(from, join(base, entry), {recursive: true})
    }
    // readable (and dirs traversable) by others, whatever the checkout's modes or umask
    const open = (p: string) => {
      const st = statSync(p)
      if (st.isDirectory()) {
        chmodSync(p, (st.mode & 0o7777) | 0o755)
        for (const n of readdirSync(p)) open(join(p, n))
      } else chmodSync(p, (st.mode & 0o7777) | 0o444 | (st.mode & 0o100 ? 0o111 : 0))
    }
    open(base)
  } catch (err) {
    rmSync(base, {recursive: true, force: true})
    throw err
  }
  return {cliPath: join(base, 'bin', 'run.js'), remove: () => rmSync(base, {recursive: true, force: true})}
}

/** Same, without waiting (for the concurrent test). */
function cliAsync(args: string[]): Promise<Res> {
  return new Promise((res) => {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, CLI, ...args, '--cni-netconfpath', dir], {
      env: {...process.env, CONTAINERD_ADDRESS: join(tmp, 'no-containerd.sock')},
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => res({code: code ?? 128, stdout, stderr}))
  })
}

/** Every file under d with mode and content, to prove a failed command changed nothing. */
function snapshot(d: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (p: string) => {
    for (const n of readdirSync(p).sort()) {
      const f = join(p, n)
      const st = lstatSync(f)
      if (st.isDirectory()) {
        out[f + '/'] = (st.mode & 0o7777).toString(8)
        walk(f)
      } else out[f] = `${(st.mode & 0o7777).toString(8)} ${readFileSync(f, 'utf8')}`
    }
  }
  walk(d)
  return out
}

function links(): string[] {
  const r = spawnSync('ip', ['-n', NS, '-o', 'link', 'show'], {encoding: 'utf8'})
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1]!.trim().split('@')[0]!)
}

const ID = /^[0-9a-f]{64}\n$/
const file = (...p: string[]) => join(dir, ...p)
const read = (...p: string[]) => readFileSync(file(...p), 'utf8')
const subnetOf = (f: string) => JSON.parse(readFileSync(f, 'utf8')).plugins[0].ipam.ranges[0][0].subnet as string

const CONTAINERD_NET = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'containerd-net',
  plugins: [{type: 'bridge', bridge: 'cni0', ipam: {type: 'host-local', ranges: [[{subnet: '10.88.0.0/16'}]]}}, {type: 'portmap', capabilities: {portMappings: true}}],
})

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'h1x-e2e-'))
  chmodSync(tmp, 0o755)
  sh('ip', ['netns', 'add', NS])
  sh('ip', ['-n', NS, 'link', 'set', 'lo', 'up'])
})

afterAll(() => {
  spawnSync('ip', ['netns', 'del', NS])
  if (tmp) rmSync(tmp, {recursive: true, force: true})
})

let seq = 0
beforeEach(() => {
  dir = join(tmp, `conf${seq++}`)
  mkdirSync(dir)
})

describe('network create', () => {
  it('prints the ID and writes nerdctl’s exact file (first free subnet 10.4.1.0/24)', () => {
    const r = cli(['network', 'create', 'foo'])
    expect(r).toMatchObject({code: 0, stderr: ''})
    expect(r.stdout).toBe('2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\n')
    expect(read('default', 'nerdctl-foo.conflist')).toBe(FOO)
    expect(lstatSync(file('default', 'nerdctl-foo.conflist')).mode & 0o777).toBe(0o644 & ~process.umask())
    expect(lstatSync(file('.nerdctl.lock')).mode & 0o777).toBe(0o600)
  })

  it('the issue example: -d bridge --subnet 10.244.0.0/16 mynet', () => {
    const r = cli(['network', 'create', '-d', 'bridge', '--subnet', '10.244.0.0/16', 'mynet'])
    expect(r).toMatchObject({code: 0, stdout: '11c844f95e2862126712e209cd3acbc68c137931c639633da9dfc17b3a464bde\n', stderr: ''})
    expect(read('default', 'nerdctl-mynet.conflist')).toBe(
      FOO.replaceAll('2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae', '11c844f95e2862126712e209cd3acbc68c137931c639633da9dfc17b3a464bde')
        .replace('"name": "foo"', '"name": "mynet"')
        .replace('br-2c26b46b68ff', 'br-11c844f95e28')
        .replace('"10.4.1.1"', '"10.244.0.1"')
        .replace('"10.4.1.0/24"', '"10.244.0.0/16"'),
    )
  })

  it('every flag: labels, gateway, ip-range, ipv6, internal, mtu, bridge name, namespace', () => {
    const r = cli([
      'network', 'create', '-n', 'team1', '--label', 'b=2', '--label', 'a=1', '--subnet', '10.30.0.0/16', '--gateway', '10.30.0.254',
      '--ip-range', '10.30.5.0/24', '--ipv6', '--subnet', 'fd00:30::/64', '--internal', '-o', 'mtu=1400',
      '-o', 'com.docker.network.bridge.name=br-team1', 'flags1',
    ])
    expect(r).toMatchObject({code: 0, stderr: ''})
    expect(r.stdout).toMatch(ID)
    const conf = JSON.parse(read('team1', 'nerdctl-flags1.conflist'))
    expect(conf).toEqual({
      cniVersion: '1.0.0',
      name: 'flags1',
      nerdctlID: r.stdout.trim(),
      nerdctlLabels: {a: '1', b: '2'},
      plugins: [
        {
          type: 'bridge',
          bridge: 'br-team1',
          mtu: 1400,
          hairpinMode: true,
          ipam: {
            ranges: [
              [{gateway: '10.30.0.254', ipRange: '10.30.5.0/24', rangeEnd: '10.30.5.255', rangeStart: '10.30.5.1', subnet: '10.30.0.0/16'}],
              [{gateway: 'fd00:30::1', subnet: 'fd00:30::/64'}],
            ],
            type: 'host-local',
          },
          capabilities: {ips: true},
        },
        {type: 'firewall', ingressPolicy: 'same-bridge'},
        {type: 'tuning'},
      ],
    })
    // another namespace does not see it
    expect(cli(['network', 'ls', '-q']).stdout).toBe('')
    expect(cli(['network', 'ls', '-q', '-n', 'team1']).stdout).toBe(r.stdout.slice(0, 12) + '\n')
  })

  it('macvlan and ipvlan', () => {
    expect(cli(['network', 'create', '-d', 'macvlan', '-o', 'parent=eth0', '--subnet', '192.168.60.0/24', 'mv1']).code).toBe(0)
    expect(JSON.parse(read('default', 'nerdctl-mv1.conflist')).plugins).toEqual([
      {type: 'macvlan', master: 'eth0', ipam: {ranges: [[{gateway: '192.168.60.1', subnet: '192.168.60.0/24'}]], routes: [{dst: '0.0.0.0/0'}], type: 'host-local'}},
    ])
    expect(cli(['network', 'create', '-d', 'ipvlan', '-o', 'mode=l3', 'iv1']).code).toBe(0)
    // the macvlan subnet is not it, the automatic one is
    expect(JSON.parse(read('default', 'nerdctl-iv1.conflist')).plugins[0]).toMatchObject({type: 'ipvlan', master: '', mode: 'l3'})
    expect(subnetOf(file('default', 'nerdctl-iv1.conflist'))).toBe('10.4.1.0/24')
  })

  it('--ignore: exit 0 and the existing ID', () => {
    const a = cli(['network', 'create', 'ign'])
    const b = cli(['network', 'create', '--ignore', 'ign', '--subnet', '10.99.0.0/16'])
    expect(b).toMatchObject({code: 0, stdout: a.stdout})
  })

  it('Go-style boolean flags: --ipv4=false --ipv6=true (IPv6-only)', () => {
    const r = cli(['network', 'create', '--ipv4=false', '--ipv6=true', '--subnet', 'fd00:40::/64', 'v6only'])
    expect(r).toMatchObject({code: 0, stderr: ''})
    expect(JSON.parse(read('default', 'nerdctl-v6only.conflist')).plugins[0].ipam).toEqual({
      ranges: [[{gateway: 'fd00:40::1', subnet: 'fd00:40::/64'}]],
      routes: [{dst: '::/0'}],
      type: 'host-local',
    })
  })

  it('skips interface networks, on-link routes and every visible network', () => {
    sh('ip', ['-n', NS, 'link', 'add', 'h1xdummy0', 'type', 'bridge'])
    try {
      sh('ip', ['-n', NS, 'addr', 'add', '10.4.1.5/24', 'dev', 'h1xdummy0'])
      sh('ip', ['-n', NS, 'link', 'set', 'h1xdummy0', 'up'])
      sh('ip', ['-n', NS, 'route', 'add', '10.4.2.0/24', 'dev', 'h1xdummy0', 'scope', 'link'])
      writeFileSync(file('10-containerd-net.conflist'), JSON.stringify({...JSON.parse(CONTAINERD_NET), plugins: [{type: 'ptp', ipam: {type: 'host-local', ranges: [[{subnet: '10.4.3.0/24'}]]}}]}))
      expect(cli(['network', 'create', '-d', 'macvlan', 'skip1']).code).toBe(0)
      expect(subnetOf(file('default', 'nerdctl-skip1.conflist'))).toBe('10.4.4.0/24')
      expect(cli(['network', 'create', 'skip2']).code).toBe(0)
      expect(subnetOf(file('default', 'nerdctl-skip2.conflist'))).toBe('10.4.5.0/24')
      const clash = cli(['network', 'create', '--subnet', '10.4.2.0/25', 'skip3'])
      expect(clash.code).not.toBe(0)
      expect(clash.stderr).toMatch(/overlaps with other one on this address space \(10.4.2.0\/24\)/)
    } finally {
      spawnSync('ip', ['-n', NS, 'link', 'del', 'h1xdummy0'])
    }
  })
})

describe('bad input: one line on stderr, non-zero exit, every file as it was', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['name -x', ['network', 'create', '-x'], /Nonexistent flag: -x/],
    ['name a', ['network', 'create', 'a'], /invalid network name "a"/],
    ['name ../evil', ['network', 'create', '../evil'], /invalid network name "\.\.\/evil"/],
    ['name a/b', ['network', 'create', 'a/b'], /invalid network name "a\/b"/],
    ['name with a space', ['network', 'create', 'a b'], /invalid network name "a b"/],
    ['host bits', ['network', 'create', '--subnet', '10.244.0.1/16', 'n1'], /subnet 10.244.0.1\/16 has host bits set; maybe you meant 10.244.0.0\/16\?/],
    ['invalid CIDR', ['network', 'create', '--subnet', '10.1.2.0/40', 'n1'], /failed to parse subnet "10.1.2.0\/40"/],
    ['gateway outside subnet', ['network', 'create', '--subnet', '10.50.0.0/16', '--gateway', '10.51.0.1', 'n1'], /no matching subnet for gateway "10.51.0.1"/],
    ['gateway without subnet', ['network', 'create', '--gateway', '10.4.1.1', 'n1'], /cannot set gateway or ip-range without subnet/],
    ['ip-range without subnet', ['network', 'create', '--ip-range', '10.4.1.0/25', 'n1'], /cannot set gateway or ip-range without subnet/],
    ['overlapping subnet', ['network', 'create', '--subnet', '10.77.128.0/17', 'n1'], /subnet 10.77.128.0\/17 overlaps with other one on this address space/],
    ['existing name', ['network', 'create', 'existing'], /network with name existing already exists/],
    ['unknown driver', ['network', 'create', '-d', 'ipsec', 'n1'], /unsupported cni driver "ipsec"/],
    ['unknown option', ['network', 'create', '-o', 'foo=bar', 'n1'], /unsupported "bridge" network option "foo"/],
    ['bad bridge name', ['network', 'create', '-o', 'com.docker.network.bridge.name=way-too-long-name', 'n1'], /invalid -o com\.docker\.network\.bridge\.name: "way-too-long-name" is not an interface name: it is longer than 15 characters/],
    ['unknown ipam driver', ['network', 'create', '--ipam-driver', 'nope', 'n1'], /unsupported ipam driver "nope"/],
    ['rm host', ['network', 'rm', 'host'], /^ctrnet: network rm : pseudo network not allowed: host$/],
    ['rm bridge', ['network', 'rm', 'bridge'], /^ctrnet: network rm : cannot remove pre-defined network bridge$/],
    ['rm foreign', ['network', 'rm', 'containerd-net'], /^ctrnet: network rm : containerd-net is managed outside nerdctl and cannot be removed$/],
    ['rm unknown', ['network', 'rm', 'nosuch'], /^ctrnet: network rm : no network found matching: nosuch$/],
    ['inspect unknown', ['network', 'inspect', 'nosuch'], /^ctrnet: network inspect : no network found matching: nosuch$/],
    ['ls bad filter', ['network', 'ls', '-f', 'colour=red'], /invalid filter "colour"/],
    ['ls bad template', ['network', 'ls', '--format', '{{.Nope}}'], /can't evaluate field Nope/],
  ]
  it.each(cases)('%s', (_label, args, re) => {
    expect(cli(['network', 'create', '--subnet', '10.77.0.0/16', 'existing']).code).toBe(0)
    writeFileSync(file('10-containerd-net.conflist'), CONTAINERD_NET)
    writeFileSync(file('nerdctl-bridge.conflist'), DEFAULT_BRIDGE_FILE)
    const before = snapshot(dir)
    const r = cli(args)
    expect(r.code).not.toBe(0)
    expect(r.stderr.endsWith('\n')).toBe(true)
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^ctrnet: /)
    expect(r.stderr.trimEnd()).toMatch(re)
    expect(snapshot(dir)).toEqual(before)
  })

  it('unwritable config dir (as nobody), and a config dir below a file', () => {
    chmodSync(dir, 0o755)
    const before = snapshot(dir)
    const copy = worldReadableCli()
    try {
      // positive control: nobody can run this copy and read the dir, so what fails below is the write
      const ls = cli(['network', 'ls'], {as: 'nobody', cliPath: copy.cliPath})
      expect(ls, 'nobody must be able to run the copied CLI').toMatchObject({code: 0, stderr: ''})
      expect(ls.stdout).toMatch(/^NETWORK ID/)
      const r = cli(['network', 'create', 'n1'], {as: 'nobody', cliPath: copy.cliPath})
      expect(r.code).not.toBe(0)
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/^ctrnet: network create n1 : .*(EACCES|permission denied)/i)
      expect(snapshot(dir)).toEqual(before)
    } finally {
      copy.remove()
    }
    expect(existsSync(dirname(dirname(copy.cliPath))), 'the copy must be gone').toBe(false)
    writeFileSync(file('plain'), 'x')
    const r2 = cli(['network', 'create', 'n1'], {dir: file('plain', 'sub')})
    expect(r2.code).not.toBe(0)
    expect(r2.stderr).toMatch(/^ctrnet: network create n1 : cannot create config dir .*ENOTDIR/)
  })
})

describe('network ls', () => {
  it('the table of the issue, byte for byte (host and none last, padded as Go tabwriter)', () => {
    writeFileSync(file('10-containerd-net.conflist'), CONTAINERD_NET)
    expect(cli(['network', 'create', '-d', 'bridge', '--subnet', '10.244.0.0/16', 'mynet']).code).toBe(0)
    const r = cli(['network', 'ls'])
    expect(r).toMatchObject({code: 0, stderr: ''})
    const pad = (s: string, n: number) => s + ' '.repeat(n - s.length)
    expect(r.stdout).toBe(
      pad('NETWORK ID', 16) + pad('NAME', 18) + 'FILE\n' +
        pad('', 16) + pad('containerd-net', 18) + file('10-containerd-net.conflist') + '\n' +
        pad('11c844f95e28', 16) + pad('mynet', 18) + file('default', 'nerdctl-mynet.conflist') + '\n' +
        pad('', 16) + pad('host', 18) + '\n' +
        pad('', 16) + pad('none', 18) + '\n',
    )
    // `list` is an alias
    expect(cli(['network', 'list']).stdout).toBe(r.stdout)
  })

  it('-q, --no-trunc, --format json / template, filters', () => {
    const a = cli(['network', 'create', '--label', 'app=web', '--label', 'tier', 'web1']).stdout.trim()
    const b = cli(['network', 'create', '-d', 'macvlan', 'db1']).stdout.trim()
    writeFileSync(file('10-containerd-net.conflist'), CONTAINERD_NET)
    expect(cli(['network', 'ls', '-q']).stdout).toBe(`${b.slice(0, 12)}\n${a.slice(0, 12)}\n`)
    expect(cli(['network', 'ls', '-q', '--no-trunc']).stdout).toBe(`${b}\n${a}\n`)
    expect(cli(['network', 'ls', '--format', 'json', '-f', 'name=web']).stdout).toBe(
      `{"ID":"${a.slice(0, 12)}","Name":"web1","Labels":"app=web,tier="}\n`,
    )
    expect(cli(['network', 'ls', '--format', '{{.Name}}\\t{{.ID}}']).stdout).toBe(
      `containerd-net\\t\ndb1\\t${b.slice(0, 12)}\nweb1\\t${a.slice(0, 12)}\nhost\\t\nnone\\t\n`,
    )
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'label=app=web']).stdout).toBe('web1\n')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'label=tier']).stdout).toBe('web1\n')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'label=app=db']).stdout).toBe('')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'driver=macvlan']).stdout).toBe('db1\n')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', `id=${a.slice(0, 5)}`]).stdout).toBe('web1\n')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'name=^(web|db)', '-f', 'driver=bridge']).stdout).toBe('web1\n')
    expect(cli(['network', 'ls', '--format', '{{.Name}}', '-f', 'name=1$,driver=macvlan']).stdout).toBe('db1\n')
  })

  it('a broken conflist is skipped with one warning naming it; the rest still list', () => {
    expect(cli(['network', 'create', 'ok1']).code).toBe(0)
    writeFileSync(file('05-broken.conflist'), '{"cniVersion": "1.0.0", "name": ')
    const r = cli(['network', 'ls', '--format', '{{.Name}}'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('ok1\nhost\nnone\n')
    expect(r.stderr).toMatch(new RegExp(`^ctrnet: warning: skipping ${file('05-broken.conflist')}: invalid JSON.*\\n$`))
    // create still works and still warns
    const c = cli(['network', 'create', 'ok2'])
    expect(c.code).toBe(0)
    expect(c.stderr).toContain('05-broken.conflist')
    expect(subnetOf(file('default', 'nerdctl-ok2.conflist'))).toBe('10.4.2.0/24')
  })
})

describe('network inspect', () => {
  it('dockercompat (default): 4-space JSON array and a blank line, as nerdctl', () => {
    const id = cli(['network', 'create', '--subnet', '10.244.0.0/16', '--ip-range', '10.244.7.0/24', '--label', 'k=v', 'insp']).stdout.trim()
    const r = cli(['network', 'inspect', 'insp'])
    expect(r).toMatchObject({code: 0, stderr: ''})
    expect(r.stdout).toBe(
      JSON.stringify(
        [{Name: 'insp', Id: id, IPAM: {Config: [{Subnet: '10.244.0.0/16', Gateway: '10.244.0.1', IPRange: '10.244.7.0/24'}]}, Labels: {k: 'v'}, Containers: {}}],
        null,
        4,
      ) + '\n\n',
    )
    // by ID prefix, several at once, Labels null without labels
    cli(['network', 'create', 'insp2'])
    const two = JSON.parse(cli(['network', 'inspect', id.slice(0, 6), 'insp2']).stdout)
    expect(two.map((n: {Name: string}) => n.Name)).toEqual(['insp', 'insp2'])
    expect(two[1].Labels).toBeNull()
  })

  it('native mode and --format', () => {
    const id = cli(['network', 'create', 'nat1']).stdout.trim()
    const r = JSON.parse(cli(['network', 'inspect', '--mode', 'native', 'nat1']).stdout)
    expect(r).toEqual([{CNI: JSON.parse(read('default', 'nerdctl-nat1.conflist')), NerdctlID: id, File: file('default', 'nerdctl-nat1.conflist'), Containers: null}])
    expect(cli(['network', 'inspect', '--format', '{{.Name}} {{.Id}} {{json .IPAM}}', 'nat1']).stdout).toBe(
      `nat1 ${id} {"Config":[{"Subnet":"10.4.1.0/24","Gateway":"10.4.1.1"}]}\n`,
    )
    // host/none inspect like nerdctl's pseudo configs; omitted fields still work in templates
    expect(cli(['network', 'inspect', '--format', '[{{.Id}}] {{json .}}', 'host']).stdout).toBe(
      '[] {"Name":"host","IPAM":{},"Labels":null,"Containers":{}}\n',
    )
  })

  it('partial failure: the found ones print, the missing one is an error line, exit non-zero', () => {
    cli(['network', 'create', 'part1'])
    const r = cli(['network', 'inspect', 'part1', 'missing1'])
    expect(r.code).not.toBe(0)
    expect(JSON.parse(r.stdout)[0].Name).toBe('part1')
    expect(r.stderr).toBe('ctrnet: network inspect : no network found matching: missing1\n')
  })
})

describe('network rm / prune', () => {
  it('rm deletes the file and the bridge link; prints the request as typed', () => {
    const id = cli(['network', 'create', 'gone1']).stdout.trim()
    sh('ip', ['-n', NS, 'link', 'add', `br-${id.slice(0, 12)}`, 'type', 'bridge'])
    expect(links()).toContain(`br-${id.slice(0, 12)}`)
    const r = cli(['network', 'rm', id.slice(0, 8)])
    expect(r).toMatchObject({code: 0, stdout: `${id.slice(0, 8)}\n`, stderr: ''})
    expect(links()).not.toContain(`br-${id.slice(0, 12)}`)
    expect(readdirSync(file('default'))).toEqual([])
    // without a link it works too; `remove` is an alias
    cli(['network', 'create', 'gone2'])
    expect(cli(['network', 'remove', 'gone2'])).toMatchObject({code: 0, stdout: 'gone2\n'})
  })

  it('rm of several: removes what it can, one line per refusal, exit non-zero', () => {
    cli(['network', 'create', 'keep1'])
    writeFileSync(file('nerdctl-bridge.conflist'), DEFAULT_BRIDGE_FILE)
    const r = cli(['network', 'rm', 'keep1', 'bridge', 'none'])
    expect(r.code).not.toBe(0)
    expect(r.stdout).toBe('keep1\n')
    expect(r.stderr).toBe('ctrnet: network rm : pseudo network not allowed: none\nctrnet: network rm : cannot remove pre-defined network bridge\n')
    expect(read('nerdctl-bridge.conflist')).toBe(DEFAULT_BRIDGE_FILE)
  })

  it('prune asks [y/N]; -f removes every nerdctl network but bridge; foreign files stay', () => {
    cli(['network', 'create', 'p1'])
    cli(['network', 'create', '-d', 'macvlan', 'p2'])
    writeFileSync(file('nerdctl-bridge.conflist'), DEFAULT_BRIDGE_FILE)
    writeFileSync(file('10-containerd-net.conflist'), CONTAINERD_NET)
    const before = snapshot(dir)
    const no = cli(['network', 'prune'], {input: 'n\n'})
    expect(no).toMatchObject({
      code: 0,
      stdout: 'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ',
    })
    expect(snapshot(dir)).toEqual(before)
    expect(cli(['network', 'prune'], {input: ''}).code).toBe(0)
    expect(snapshot(dir)).toEqual(before)
    const yes = cli(['network', 'prune'], {input: 'Y\n'})
    expect(yes.stdout).toBe(no.stdout + 'Deleted Networks:\np1\np2\n\n')
    cli(['network', 'create', 'p3'])
    expect(cli(['network', 'prune', '-f'])).toMatchObject({code: 0, stdout: 'Deleted Networks:\np3\n\n', stderr: ''})
    expect(cli(['network', 'prune', '-f'])).toMatchObject({code: 0, stdout: ''})
    expect(cli(['network', 'ls', '--format', '{{.Name}}']).stdout).toBe('containerd-net\nbridge\nhost\nnone\n')
  })
})

describe('locking', () => {
  it('20 concurrent creates without --subnet: 20 networks, 20 distinct subnets, no partial or temp files', async () => {
    const res = await Promise.all(Array.from({length: 20}, (_, i) => cliAsync(['network', 'create', `par${i}`])))
    for (const r of res) {
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(ID)
    }
    const files = readdirSync(file('default')).sort()
    expect(files).toEqual(Array.from({length: 20}, (_, i) => `nerdctl-par${i}.conflist`).sort())
    expect(readdirSync(dir).sort()).toEqual(['.nerdctl.lock', 'default'])
    const subnets = files.map((f) => subnetOf(file('default', f)))
    expect(new Set(subnets).size).toBe(20)
    expect(cli(['network', 'ls', '-q']).stdout.split('\n').filter(Boolean)).toHaveLength(20)
  })

  it('create waits for the lock that another holder (flock -x on .nerdctl.lock) has', async () => {
    writeFileSync(file('.nerdctl.lock'), '')
    const marker = join(tmp, `marker-${seq}`)
    // The holder creates the marker just before it lets go of the lock.
    const holder = spawn('flock', ['-x', file('.nerdctl.lock'), 'sh', '-c', `sleep 1; touch ${marker}`])
    await new Promise((r) => setTimeout(r, 300))
    const r = await cliAsync(['network', 'create', 'waited'])
    expect(r.code).toBe(0)
    // The create could only write after the holder released the lock.
    expect(lstatSync(marker).isFile()).toBe(true)
    await new Promise((r) => holder.once('close', r).exitCode !== null && r(undefined))
  })
})
