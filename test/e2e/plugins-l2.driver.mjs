// Runs one embedded plugin command in-process (used by plugins-l2.test.ts,
// always inside a throwaway network namespace via `ip netns exec`).
// argv: <distDir> ; stdin: {plugin, command, containerId, netns, ifName, cniArgs, config}
// stdout: {ok:true, result, spawns, ms} or {ok:false, error}
import {readFileSync} from 'node:fs'
import {pathToFileURL} from 'node:url'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

const dist = process.argv[2]
const input = JSON.parse(readFileSync(0, 'utf8'))
const load = async (rel) => import(pathToFileURL(join(dist, rel)).href)
const {parsePlugin} = await load('libcni/chain.js')
const ipmod = await load('kernel/ip/batch.js')
const {iptablesBackend} = await load('kernel/netfilter/iptables/index.js')

function parseArgs(s) {
  return (s || '').split(';').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=')
    return [kv.slice(0, i), kv.slice(i + 1)]
  })
}

// What the runtime does before it runs a plugin: the plugin parses its
// netconf once (then its embedded IPAM plugin, on the same netconf); an ADD
// fails with a refusal of either before any work.
function parse(inp, command, config) {
  const ctx = {command, containerId: inp.containerId, ifName: inp.ifName ?? 'eth0', args: parseArgs(inp.cniArgs)}
  const p = parsePlugin(config, 'plugins[0]', ctx, true)
  if (!p.plugin) throw new Error(`no embedded plugin ${config.type}`)
  if (command === 'ADD' && p.ipam?.error !== undefined) throw p.ipam.error
  return p
}

function request(inp, p, config, firewall) {
  return {
    command: inp.command,
    containerId: inp.containerId,
    netns: inp.netns,
    ifName: inp.ifName ?? 'eth0',
    cniArgs: inp.cniArgs ?? '',
    args: parseArgs(inp.cniArgs),
    cniPath: ['/usr/lib/cni'],
    config,
    firewall,
    async invokeIpam(command) {
      if (!p.ipam?.plugin) throw new Error(`no embedded ipam ${config.ipam?.type}`)
      return run(p.ipam, {...inp, command}, config, firewall)
    },
  }
}

/** One command of a parsed plugin, as the runtime runs it. */
async function run(p, inp, config, firewall) {
  if (p.error !== undefined) throw p.error
  const r = request(inp, p, config, firewall)
  if (inp.command === 'ADD') return p.plugin.add(r, p.conf)
  if (inp.command === 'DEL') return void (await p.plugin.del(r, p.conf))
  if (inp.command === 'CHECK') return void (await p.plugin.check(r, p.conf))
}

// As the runtime does: one firewall transaction per plugin command, committed
// when the command succeeded (a failed one applies no rule).
async function inTx(fn) {
  const nf = iptablesBackend.open({lockPath: process.env.CTRNET_IPTABLES_LOCK || undefined})
  try {
    const out = await fn(nf)
    await nf.commit()
    return out
  } finally {
    nf.release()
  }
}

const t0 = performance.now()
try {
  if (input.plugin !== input.config.type) throw new Error(`no embedded plugin ${input.plugin}`)
  const cmd = (command, config, nf) => run(parse(input, command, config), {...input, command}, config, nf)
  // an ADD's refusals come before any work
  if (input.command === 'ADD' || input.command === 'ADDDEL') parse(input, 'ADD', input.config)
  let result
  const rounds = input.rounds ?? 1
  for (let i = 0; i < rounds; i++) {
    if (input.command === 'ADD') result = await inTx((nf) => cmd('ADD', input.config, nf))
    else if (input.command === 'DEL') await inTx((nf) => cmd('DEL', input.config, nf))
    else if (input.command === 'CHECK') await cmd('CHECK', input.config, undefined)
    else if (input.command === 'ADDDEL') {
      const r = await inTx((nf) => cmd('ADD', input.config, nf))
      await inTx((nf) => cmd('DEL', {...input.config, prevResult: r}, nf))
    }
  }
  process.stdout.write(JSON.stringify({ok: true, result, spawns: ipmod.spawnStats.count, ms: performance.now() - t0}))
} catch (e) {
  process.stdout.write(JSON.stringify({ok: false, error: e.message, code: e.code}))
}
