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
const {loadEmbedded} = await load('plugins/registry/index.js')
const ipmod = await load('kernel/ip/batch.js')
const {iptablesBackend} = await load('kernel/netfilter/iptables/index.js')

function parseArgs(s) {
  return (s || '').split(';').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=')
    return [kv.slice(0, i), kv.slice(i + 1)]
  })
}

function request(inp, config, firewall) {
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
    async invokeIpam(command, conf) {
      const p = await loadEmbedded(conf.ipam.type)
      if (!p) throw new Error(`no embedded ipam ${conf.ipam.type}`)
      const r = request({...inp, command}, conf, firewall)
      if (command === 'ADD') return p.add(r)
      if (command === 'DEL') return void (await p.del(r))
      if (command === 'CHECK') return void (await p.check(r))
    },
  }
}

// What the runtime runs before an ADD chain: the plugin's own config checks,
// then its embedded IPAM plugin's, on the plugin's netconf.
async function precheck(plugin, req) {
  await plugin.precheck?.(req)
  const type = req.config.ipam?.type
  const ipam = typeof type === 'string' && type ? await loadEmbedded(type) : undefined
  await ipam?.precheck?.(req)
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
  const plugin = await loadEmbedded(input.plugin)
  if (!plugin) throw new Error(`no embedded plugin ${input.plugin}`)
  const req = (nf) => request(input, input.config, nf)
  if (input.command === 'ADD' || input.command === 'ADDDEL') await precheck(plugin, req(undefined))
  let result
  const rounds = input.rounds ?? 1
  for (let i = 0; i < rounds; i++) {
    if (input.command === 'ADD') result = await inTx((nf) => plugin.add(req(nf)))
    else if (input.command === 'DEL') await inTx((nf) => plugin.del(req(nf)))
    else if (input.command === 'CHECK') await plugin.check(req(undefined))
    else if (input.command === 'ADDDEL') {
      const r = await inTx((nf) => plugin.add({...req(nf), command: 'ADD'}))
      await inTx((nf) => plugin.del({...req(nf), command: 'DEL', config: {...input.config, prevResult: r}}))
    }
  }
  process.stdout.write(JSON.stringify({ok: true, result, spawns: ipmod.spawnStats.count, ms: performance.now() - t0}))
} catch (e) {
  process.stdout.write(JSON.stringify({ok: false, error: e.message, code: e.code}))
}
