/**
 * Throwaway network namespaces for e2e tests. Every namespace created here is
 * remembered and removed by `destroyAllNetns()` (register it with
 * `useNetnsCleanup(afterAll)` in a test file so it runs even when tests fail).
 * This module does not import vitest, so scripts (benchmarks) can use it too.
 * Names are `<prefix>-<tag>-<random>`, short enough for interface-name uses.
 */
import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import {run, type ExecOptions, type ExecResult} from '../../src/sys/exec.js'

const created = new Set<string>()

export function netnsPath(name: string): string {
  return `/var/run/netns/${name}`
}

/** A unique name: `<prefix>-<tag>-<6 hex>`; tag is cut so the whole stays short. */
export function uniqueName(prefix: string, tag = ''): string {
  const rnd = randomBytes(3).toString('hex')
  return tag ? `${prefix}-${tag.slice(0, 12)}-${rnd}` : `${prefix}-${rnd}`
}

export interface CreateNetnsOptions {
  /** Bring `lo` up (default true). */
  loopbackUp?: boolean
}

/** Creates a fresh netns and returns its name. */
export async function createNetns(prefix: string, tag = '', opts: CreateNetnsOptions = {}): Promise<string> {
  const name = uniqueName(prefix, tag)
  await run('ip', ['netns', 'add', name])
  created.add(name)
  if (opts.loopbackUp ?? true) await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return name
}

/** Deletes a netns (tolerates it being gone already). Kills processes still inside it first. */
export async function destroyNetns(name: string): Promise<void> {
  created.delete(name)
  if (!existsSync(netnsPath(name))) return
  const pids = await run('ip', ['netns', 'pids', name], {allowFailure: true})
  for (const p of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL')
    } catch {
      /* already gone */
    }
  }
  await run('ip', ['netns', 'del', name], {allowFailure: true})
}

/** Deletes every netns created through this module that still exists. */
export async function destroyAllNetns(): Promise<void> {
  for (const n of [...created]) await destroyNetns(n)
}

/**
 * Registers destroyAllNetns() with the given hook (vitest's afterAll), so the
 * namespaces are removed even when tests fail.
 */
export function useNetnsCleanup(afterAllHook: (fn: () => Promise<void>) => void): void {
  afterAllHook(async () => {
    await destroyAllNetns()
  })
}

/** Names created and not destroyed yet (for diagnostics). */
export function liveNetns(): string[] {
  return [...created]
}

/** Runs argv inside netns `name` (`ip netns exec name argv...`). Throws on failure unless allowFailure. */
export function nsExec(name: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', name, ...argv], opts)
}

/** Like nsExec but never throws; returns the exit code and output. */
export function nsTry(name: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', name, ...argv], {...opts, allowFailure: true})
}

/** `ip -n name ...` (iproute2 in a netns without a full exec). */
export function ipIn(name: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run('ip', ['-n', name, ...args], opts)
}

/**
 * Starts a long-running process inside a netns (e.g. a server) and returns a
 * stop function. The process is also killed by destroyNetns.
 */
export async function nsSpawn(name: string, argv: string[]): Promise<{pid: number; stop: () => void}> {
  const {spawn} = await import('node:child_process')
  const child = spawn('ip', ['netns', 'exec', name, ...argv], {stdio: 'ignore', detached: false})
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve())
    child.once('error', reject)
  })
  return {
    pid: child.pid!,
    stop: () => {
      try {
        child.kill('SIGKILL')
      } catch {
        /* gone */
      }
    },
  }
}

/**
 * Adds a stand-in "host NIC" with addresses (IPv6 ones without DAD) in a netns: a dummy link, or, on
 * kernels without the dummy driver, one end of a veth pair whose peer
 * (`<ifname>p`, also up) stays in the same netns so the link has carrier.
 */
export async function addDummy(ns: string, ifname: string, addrs: string[] = []): Promise<void> {
  const dummy = await run('ip', ['-n', ns, 'link', 'add', ifname, 'type', 'dummy'], {allowFailure: true})
  const cmds: string[] = []
  if (dummy.code !== 0) {
    const peer = `${ifname.slice(0, 14)}p`
    cmds.push(`link add ${ifname} type veth peer name ${peer}`, `link set ${peer} up`)
  }
  cmds.push(...addrs.map((a) => `addr add ${a} dev ${ifname}${a.includes(':') ? ' nodad' : ''}`), `link set ${ifname} up`)
  await run('ip', ['-n', ns, '-batch', '-'], {input: cmds.join('\n') + '\n'})
}

/**
 * Connects two netns with a veth pair `aIf`<->`bIf` and addresses on each end
 * (e.g. a "client" namespace talking to the host namespace). IPv6 addresses skip DAD.
 */
export async function linkNetns(
  a: string,
  aIf: string,
  aAddrs: string[],
  b: string,
  bIf: string,
  bAddrs: string[],
): Promise<void> {
  await run('ip', ['-n', a, 'link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b])
  const nodad = (x: string) => (x.includes(':') ? ['nodad'] : [])
  for (const x of aAddrs) await ipIn(a, ['addr', 'add', x, 'dev', aIf, ...nodad(x)])
  for (const x of bAddrs) await ipIn(b, ['addr', 'add', x, 'dev', bIf, ...nodad(x)])
  await ipIn(a, ['link', 'set', aIf, 'up'])
  await ipIn(b, ['link', 'set', bIf, 'up'])
}
