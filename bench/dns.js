// The embedded DNS server (dist/services/dns/server.js) against dnsmasq (Debian's
// dnsmasq-base; podman's older per-network DNS, the dnsname CNI plugin, runs
// it), side by side in one run. Both serve the same name (`web`, A 10.4.1.2,
// TTL 0; dnsmasq from a hosts file) on one address of a server netns; the
// load comes from dnsperf (Debian's dnsperf) in a client netns, over a veth
// pair between the two. The bench makes both namespaces and removes them.
//
//  (a) queries per second for the known name: dnsperf at full speed (100
//      queries outstanding, one thread, SECONDS s), alternating, median of
//      ROUNDS. Shown as ms per 1000 queries (1e6/qps), so the ratio is
//      dnsmasq's qps over ctrnet's; goal <= 2.0 (ctrnet answers at least 0.5x
//      dnsmasq's qps).
//  (b) p99 latency at load: at full speed the latency is only the queue
//      (100 outstanding / qps), so p99 is measured at a fixed offered load,
//      the same for both: half of dnsmasq's measured qps, the rate the goal of
//      (a) asks ctrnet to sustain (dnsperf -Q, each query's latency from -v).
//      Goal: ctrnet's p99 under 2 ms.
//
// The default export creates the namespaces, starts dnsmasq and
// `ip netns exec <srv> node bench/dns.js --serve ...` (the DnsServer in the
// server netns), runs dnsperf in the client netns, and stops all of it.
import {spawn, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const here = fileURLToPath(import.meta.url)
const root = join(dirname(here), '..')
const ROUNDS = 3
const SECONDS = 5
const SERVER_IP = '10.253.0.1'
const CLIENT_IP = '10.253.0.2'
const DNSMASQ_PORT = 5301
const CTRNET_PORT = 5302
const NAME = 'web'
const ADDRESS = '10.4.1.2'

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

function sh(file, args) {
  const r = spawnSync(file, args, {encoding: 'utf8', maxBuffer: 256 * 1024 * 1024})
  if (r.error) throw new Error(`${file}: ${r.error.message} (scripts/test-setup.sh installs dnsmasq-base and dnsperf)`)
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r.stdout
}

/** Starts a long-running child; resolves once `ready` (a regexp) shows on its stdout or stderr. */
function startChild(file, args, ready) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${file} ${args.join(' ')}: not ready after 10 s: ${out}`))
    }, 10_000)
    const onData = (d) => {
      out += d
      if (ready.test(out)) {
        clearTimeout(timer)
        resolve(child)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${file} exited ${code} before it was ready: ${out}`))
    })
  })
}

function stopChild(child) {
  if (!child || child.exitCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
    setTimeout(() => child.kill('SIGKILL'), 2000).unref()
  })
}

/** dnsperf in the client netns against SERVER_IP#port; returns qps and, with verbose, each query's latency in ms. */
function dnsperf(cns, queries, port, {seconds = SECONDS, maxQps, verbose = false} = {}) {
  const args = ['netns', 'exec', cns, 'dnsperf', '-s', SERVER_IP, '-p', String(port), '-d', queries, '-l', String(seconds), '-T', '1', '-c', '1', '-q', '100']
  if (maxQps) args.push('-Q', String(Math.round(maxQps)))
  if (verbose) args.push('-v')
  const out = sh('ip', args)
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1])
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1])
  const noerror = Number(/NOERROR (\d+)/.exec(out)?.[1] ?? 0)
  const completed = Number(/Queries completed:\s+(\d+)/.exec(out)?.[1])
  if (!(qps > 0) || noerror !== completed) throw new Error(`dnsperf against port ${port}: unexpected output:\n${out}`)
  const latencies = verbose ? [...out.matchAll(/^> NOERROR \S+ A ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000) : []
  return {qps, lost, latencies}
}

export default async function bench() {
  const rnd = randomBytes(3).toString('hex')
  const srv = `hd-bench-dnss-${rnd}`
  const cns = `hd-bench-dnsc-${rnd}`
  const dir = mkdtempSync(join(tmpdir(), 'hd-bench-dns-'))
  const children = []
  try {
    sh('ip', ['netns', 'add', srv])
    sh('ip', ['netns', 'add', cns])
    sh('ip', ['-n', srv, 'link', 'add', 'hdb0', 'type', 'veth', 'peer', 'name', 'hdb1', 'netns', cns])
    sh('ip', ['-n', srv, 'addr', 'add', `${SERVER_IP}/24`, 'dev', 'hdb0'])
    sh('ip', ['-n', cns, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', 'hdb1'])
    for (const [ns, dev] of [
      [srv, 'hdb0'],
      [cns, 'hdb1'],
    ]) {
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up'])
    }
    const hosts = join(dir, 'hosts')
    writeFileSync(hosts, `${ADDRESS} ${NAME} ${NAME}.benchnet\n`)
    const queries = join(dir, 'queries')
    writeFileSync(queries, `${NAME} A\n`)

    children.push(
      await startChild(
        'ip',
        ['netns', 'exec', srv, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hosts}`,
          `--port=${DNSMASQ_PORT}`, `--listen-address=${SERVER_IP}`, '--bind-interfaces', `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--user=root', '--log-facility=-'],
        /started, version/,
      ),
    )
    children.push(await startChild('ip', ['netns', 'exec', srv, process.execPath, here, '--serve', String(CTRNET_PORT), SERVER_IP], /^ready$/m))

    const servers = [
      {name: 'dnsmasq', port: DNSMASQ_PORT},
      {name: 'ctrnet', port: CTRNET_PORT},
    ]
    // warm-up (ctrnet's JIT, both caches), then alternate
    for (const s of servers) dnsperf(cns, queries, s.port, {seconds: 1})
    const qps = {dnsmasq: [], ctrnet: []}
    for (let r = 0; r < ROUNDS; r++) for (const s of servers) qps[s.name].push(dnsperf(cns, queries, s.port).qps)
    const load = median(qps.dnsmasq) / 2
    const lat = {dnsmasq: [], ctrnet: []}
    // concat, not push(...): a round holds more latencies than a call's arguments may
    for (let r = 0; r < ROUNDS; r++) for (const s of servers) lat[s.name] = lat[s.name].concat(dnsperf(cns, queries, s.port, {maxQps: load, verbose: true}).latencies)
    const q = {dnsmasq: median(qps.dnsmasq), ctrnet: median(qps.ctrnet)}
    const p99 = {dnsmasq: percentile(lat.dnsmasq, 99), ctrnet: percentile(lat.ctrnet, 99)}
    const p50 = {dnsmasq: percentile(lat.dnsmasq, 50), ctrnet: percentile(lat.ctrnet, 50)}
    process.stderr.write(
      `bench dns: qps dnsmasq ${qps.dnsmasq.map(Math.round).join(' ')}, ctrnet ${qps.ctrnet.map(Math.round).join(' ')}; ` +
        `at ${Math.round(load)} qps: p50 ${p50.dnsmasq.toFixed(3)} / ${p50.ctrnet.toFixed(3)} ms, p99 ${p99.dnsmasq.toFixed(3)} / ${p99.ctrnet.toFixed(3)} ms ` +
        `(dnsmasq / ctrnet, ${lat.dnsmasq.length} / ${lat.ctrnet.length} queries)\n`,
    )
    return [
      {
        name: `DNS ms per 1000 queries at full load (${Math.round(q.dnsmasq)} vs ${Math.round(q.ctrnet)} qps), dnsmasq vs ctrnet, median of ${ROUNDS}`,
        baselineMs: 1e6 / q.dnsmasq,
        ms: 1e6 / q.ctrnet,
        ratio: q.dnsmasq / q.ctrnet,
        goal: 2.0,
      },
      {
        name: `DNS p99 latency at ${Math.round(load)} qps (half dnsmasq's), dnsmasq vs ctrnet`,
        baselineMs: p99.dnsmasq,
        ms: p99.ctrnet,
        ratio: p99.ctrnet / p99.dnsmasq,
        goalMs: 2.0,
      },
    ]
  } finally {
    await Promise.all(children.map(stopChild))
    spawnSync('ip', ['netns', 'del', cns])
    spawnSync('ip', ['netns', 'del', srv])
    rmSync(dir, {recursive: true, force: true})
  }
}

// ---- --serve: the DnsServer, inside the server netns -----------------------

async function serve(port, address) {
  const {DnsServer} = await import(pathToFileURL(join(root, 'dist', 'services', 'dns', 'server.js')).href)
  const server = new DnsServer({port: Number(port), upstreams: []})
  server.setMembers('benchnet', [{names: [NAME], ipv4: [ADDRESS], ipv6: []}])
  const failed = await server.listen('benchnet', [address])
  if (failed.length > 0) throw new Error(`listen: ${JSON.stringify(failed)}`)
  const stop = () => server.close().then(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdout.write('ready\n')
}

if (process.argv[2] === '--serve') {
  serve(process.argv[3], process.argv[4]).catch((err) => {
    process.stderr.write(`dns bench server: ${err?.stack ?? err}\n`)
    process.exit(1)
  })
}
