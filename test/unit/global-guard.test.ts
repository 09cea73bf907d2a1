/**
 * The host guard's pure parts (test/helpers/host-guard.ts): a snapshot that
 * cannot be taken fails instead of comparing empty; a residue is accepted only
 * when it is exactly the known one, and nothing else new is hidden.
 */
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {compareSnapshots, compareTree, iptablesRules, linkNames, mustRun, tree} from '../helpers/host-guard.js'

describe('mustRun', () => {
  it('returns stdout of a command that succeeds', () => {
    expect(mustRun('printf', ['%s', 'a b'])).toBe('a b')
  })

  it('throws on a non-zero exit, naming the command, its exit code and stderr', () => {
    expect(() => mustRun('sh', ['-c', 'echo boom >&2; exit 3'])).toThrow(
      'host guard: cannot snapshot host state: sh -c echo boom >&2; exit 3 : exit 3: boom',
    )
    expect(() => mustRun('false', [])).toThrow(/: false : exit 1$/)
  })

  it('throws when the binary is missing, with the hint', () => {
    expect(() => mustRun('h8-no-such-binary', ['list'], 'install it')).toThrow(
      'host guard: cannot snapshot host state: h8-no-such-binary list : h8-no-such-binary is not installed (command not found) (install it)',
    )
  })

  it('throws when the command is killed', () => {
    expect(() => mustRun('sh', ['-c', 'kill -KILL $$'])).toThrow(/killed by SIGKILL/)
  })
})

describe('compareTree', () => {
  const base = ['/run/cni/', '/run/cni/x 3 1']

  it('no change, no residue', () => {
    expect(compareTree(base, [...base])).toEqual({changes: [], residue: []})
  })

  it('accepts the empty tuning dir and the parent the run created for it, deepest first', () => {
    expect(compareTree([], ['/run/cni/', '/run/cni/tuning/'])).toEqual({changes: [], residue: ['/run/cni/tuning/', '/run/cni/']})
    expect(compareTree(base, [...base, '/run/cni/tuning/'])).toEqual({changes: [], residue: ['/run/cni/tuning/']})
  })

  it('reports a tuning dir that still holds a backup file, and its new parent', () => {
    const r = compareTree([], ['/run/cni/', '/run/cni/tuning/', '/run/cni/tuning/c1_eth0.json 10 5'])
    expect(r.changes).toEqual(['+ /run/cni/', '+ /run/cni/tuning/', '+ /run/cni/tuning/c1_eth0.json 10 5'])
    expect(r.residue).toEqual([])
  })

  it('reports any other new directory, even an empty one', () => {
    const r = compareTree(base, [...base, '/run/cni/other/', '/run/cni/tuning/'])
    expect(r.changes).toEqual(['+ /run/cni/other/'])
    expect(r.residue).toEqual(['/run/cni/tuning/'])
    expect(compareTree([], ['/var/lib/cni/', '/var/lib/cni/networks/']).changes).toEqual(['+ /var/lib/cni/', '+ /var/lib/cni/networks/'])
  })

  it('reports removed and modified entries', () => {
    expect(compareTree([...base, '/run/cni/y 1 1'], ['/run/cni/', '/run/cni/x 4 2']).changes).toEqual([
      '- /run/cni/x 3 1',
      '- /run/cni/y 1 1',
      '+ /run/cni/x 4 2',
    ])
  })

  it('an existing tuning dir is not residue to remove', () => {
    expect(compareTree([...base, '/run/cni/tuning/'], [...base, '/run/cni/tuning/'])).toEqual({changes: [], residue: []})
  })
})

describe('compareSnapshots', () => {
  it('names the key and the lines that changed', () => {
    const before = {'host links': 'eth0\nlo', 'host sysctls': 'net/ipv4/ip_forward=0', '/run/cni': ''}
    const after = {'host links': 'eth0\nlo\nveth1', 'host sysctls': 'net/ipv4/ip_forward=1', '/run/cni': '/run/cni/\n/run/cni/tuning/'}
    expect(compareSnapshots(before, after)).toEqual({
      changes: ['host links:\n  + veth1', 'host sysctls:\n  - net/ipv4/ip_forward=0\n  + net/ipv4/ip_forward=1'],
      residue: ['/run/cni/tuning/', '/run/cni/'],
    })
  })

  it('a key missing on one side is a change', () => {
    expect(compareSnapshots({a: 'x'}, {}).changes).toEqual(['a:\n  - x'])
  })
})

describe('parsers and tree', () => {
  const dir = mkdtempSync(join(tmpdir(), 'h8-guard-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  it('linkNames and iptablesRules', () => {
    expect(linkNames('2: eth0: <UP> mtu 1500\n1: lo: <LOOPBACK> mtu 65536\n')).toEqual(['eth0', 'lo'])
    const save = '# Generated\n*filter\n:INPUT ACCEPT [5:10]\n:CNI-FORWARD - [0:0]\n-A FORWARD -j CNI-FORWARD\nCOMMIT\n'
    expect(iptablesRules(save)).toBe(':CNI-FORWARD - [0:0]\n-A FORWARD -j CNI-FORWARD')
  })

  it('tree lists dirs with "/", files with size, and nothing for a missing dir', () => {
    mkdirSync(join(dir, 'a'))
    writeFileSync(join(dir, 'a', 'f'), 'abc')
    const t = tree(dir)
    expect(t[0]).toBe(`${dir}/`)
    expect(t[1]).toBe(`${dir}/a/`)
    expect(t[2]).toMatch(new RegExp(`^${dir}/a/f 3 \\d`))
    expect(tree(join(dir, 'missing'))).toEqual([])
  })
})
