/**
 * Real traffic through networks set up by the reference plugins (the control)
 * and by ctrnet (embedded), IPv4 and dual-stack, all inside throwaway namespaces:
 *   host netns -> container ping; container -> container across the bridge;
 *   a port forward answered by busybox httpd in a container, reached from the
 *   host netns (a host address, and 127.0.0.1 for IPv4), from a third "client"
 *   netns routed through the host, from another container and from the
 *   container itself (hairpin).
 */
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {CniResult, NetConfList} from '../../../src/plugins/types.js'
import {addDummy, createNetns, destroyNetns, ipIn, linkNetns, netnsPath, nsSpawn, nsTry, useNetnsCleanup} from '../../helpers/netns.js'
import {ReferenceRunner, type RefRuntimeConf} from '../../helpers/reference.js'
import {dumpState, leftovers} from '../../helpers/state.js'
import {nerdctlChain} from '../../fixtures/conformance-cases.js'
import {describeFailure, newContainerId, PREFIX, REF_PATH, runCtrnet} from './harness.js'

useNetnsCleanup(afterAll)

const BUSYBOX = '/bin/busybox'

interface Family {
  name: 'IPv4' | 'IPv6'
  hostAddr: string
  hostPrefix: number
  clientGw: string
  clientAddr: string
  prefix: number
  /** Containers' expected addresses. */
  expect: [string, string]
}
const V4: Family = {
  name: 'IPv4',
  hostAddr: '198.51.100.1',
  hostPrefix: 24,
  clientGw: '203.0.113.1',
  clientAddr: '203.0.113.2',
  prefix: 24,
  expect: ['10.4.1.2', '10.4.1.3'],
}
const V6: Family = {
  name: 'IPv6',
  hostAddr: '2001:db8:1::1',
  hostPrefix: 64,
  clientGw: '2001:db8:2::1',
  clientAddr: '2001:db8:2::2',
  prefix: 64,
  expect: ['fd00:4:1::2', 'fd00:4:1::3'],
}

async function retry<T>(what: string, fn: () => Promise<T | undefined>, attempts = 20): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = await fn()
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 150))
  }
  throw new Error(`${what}: no success after ${attempts} attempts`)
}

async function ping(fromNs: string, ip: string): Promise<boolean> {
  const r = await nsTry(fromNs, [BUSYBOX, ip.includes(':') ? 'ping6' : 'ping', '-c', '1', '-W', '2', ip])
  return r.code === 0
}

/** HTTP GET with busybox nc (busybox-static's wget crashes resolving names). Returns the body. */
async function httpGet(fromNs: string, ip: string, port: number): Promise<{code: number; body: string}> {
  const r = await nsTry(fromNs, [BUSYBOX, 'nc', '-w', '3', ip, String(port)], {
    input: 'GET / HTTP/1.0\r\n\r\n',
    timeoutMs: 10_000,
  })
  const i = r.stdout.indexOf('\r\n\r\n')
  const ok = r.code === 0 && r.stdout.startsWith('HTTP/1.1 200') && i >= 0
  return {code: ok ? 0 : r.code || 1, body: ok ? r.stdout.slice(i + 4) : r.stdout + r.stderr}
}

for (const stack of ['IPv4', 'dual-stack'] as const) {
  for (const impl of ['reference', 'ctrnet'] as const) {
    const families = stack === 'IPv4' ? [V4] : [V4, V6]
    const tag = `${stack === 'IPv4' ? '4' : 'd'}${impl.slice(0, 3)}`
    describe.sequential(`traffic (${stack}) through a network made by ${impl}`, () => {
      const token = `h5x-token-${impl}-${stack}-${Date.now()}`
      let dir = ''
      let host = ''
      let client = ''
      const containers: string[] = []
      const results: CniResult[] = []
      const ids = [newContainerId(), newContainerId()]
      let conf: NetConfList
      let stopServer: (() => void) | undefined
      const ports = [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}]

      const rtOf = (i: number): RefRuntimeConf => ({
        containerId: ids[i]!,
        netns: netnsPath(containers[i]!),
        ifName: 'eth0',
        args: [['IgnoreUnknown', '1']],
        capabilityArgs: i === 0 ? {portMappings: ports} : {},
      })
      const ctrnetArgs = (cmd: string, i: number) => [
        'cni',
        cmd,
        conf.name,
        netnsPath(containers[i]!),
        '--container-id',
        ids[i]!,
        '--cni-netconfpath',
        join(dir, 'net.d'),
        '--cni-cachedir',
        join(dir, 'cache'),
        '--cni-path',
        REF_PATH,
        '--cni-mode',
        process.env.CTRNET_CONFORMANCE_MODE === 'exec' ? 'exec' : 'embedded',
        '--cni-args',
        'IgnoreUnknown=1',
        ...(i === 0 ? ['-p', '8080:80/tcp'] : []),
      ]
      /** The container's address of a family. */
      const ipOf = (i: number, f: Family) =>
        results[i]!.ips!.map((x) => x.address.split('/')[0]!).find((a) => a.includes(':') === (f === V6))!

      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), `${PREFIX}-traffic-${tag}-`))
        conf = nerdctlChain(
          'h5xtraffic',
          {
            bridge: 'h5x-br0',
            ranges:
              stack === 'IPv4'
                ? [[{gateway: '10.4.1.1', subnet: '10.4.1.0/24'}]]
                : [[{gateway: '10.4.1.1', subnet: '10.4.1.0/24'}], [{gateway: 'fd00:4:1::1', subnet: 'fd00:4:1::/64'}]],
            routes: stack === 'IPv4' ? [{dst: '0.0.0.0/0'}] : [{dst: '0.0.0.0/0'}, {dst: '::/0'}],
            ...(stack === 'IPv4' ? {} : {capabilities: {ips: true}}),
          },
          {dataDir: join(dir, 'ipam')},
        )
        writeFileSync(join(dir, 'index.html'), token)
        mkdirSync(join(dir, 'net.d'))
        writeFileSync(join(dir, 'net.d', 'h5xtraffic.conflist'), JSON.stringify(conf, null, 2))
        host = await createNetns(PREFIX, `tr${tag}h`)
        client = await createNetns(PREFIX, `tr${tag}k`)
        await addDummy(
          host,
          'h5x-nic0',
          families.map((f) => `${f.hostAddr}/${f.hostPrefix}`),
        )
        await linkNetns(
          host,
          'h5x-cl0',
          families.map((f) => `${f.clientGw}/${f.prefix}`),
          client,
          'eth0',
          families.map((f) => `${f.clientAddr}/${f.prefix}`),
        )
        for (const f of families) await ipIn(client, [f === V6 ? '-6' : '-4', 'route', 'add', 'default', 'via', f.clientGw])
        for (let i = 0; i < 2; i++) containers.push(await createNetns(PREFIX, `tr${tag}c${i}`))
      })

      afterAll(async () => {
        stopServer?.()
        for (const c of containers) await destroyNetns(c)
        await destroyNetns(client)
        await destroyNetns(host)
        for (const id of ids) rmSync(`/run/cni/tuning/${id}_eth0.json`, {force: true})
        rmSync(dir, {recursive: true, force: true})
      })

      it('ADD two containers', async () => {
        for (let i = 0; i < 2; i++) {
          if (impl === 'reference') {
            results.push(await new ReferenceRunner({hostNetns: host, cniPath: REF_PATH}).add(conf, rtOf(i)))
          } else {
            const r = await runCtrnet(host, ctrnetArgs('add', i))
            expect(r.code, describeFailure('ctrnet cni add', r)).toBe(0)
            results.push(JSON.parse(r.stdout) as CniResult)
          }
        }
        for (const f of families) expect([ipOf(0, f), ipOf(1, f)]).toEqual(f.expect)
      })

      it('host netns pings both containers', async () => {
        expect(results).toHaveLength(2)
        for (const f of families) {
          for (let i = 0; i < 2; i++) {
            await retry(`${f.name} ping c${i}`, async () => ((await ping(host, ipOf(i, f))) ? true : undefined), 5)
          }
        }
      })

      it('container pings container across the bridge', async () => {
        expect(results).toHaveLength(2)
        for (const f of families) {
          await retry(`${f.name} ping c0->c1`, async () => ((await ping(containers[0]!, ipOf(1, f))) ? true : undefined), 5)
          await retry(`${f.name} ping c1->c0`, async () => ((await ping(containers[1]!, ipOf(0, f))) ? true : undefined), 5)
        }
      })

      it('port forward is answered by a server in the container', async () => {
        expect(results).toHaveLength(2)
        await nsTry(containers[0]!, ['ip', 'link', 'set', 'lo', 'up'])
        const srv = await nsSpawn(containers[0]!, [BUSYBOX, 'httpd', '-f', '-p', '80', '-h', dir])
        stopServer = srv.stop
        // The server is up when the container address answers directly.
        for (const f of families) {
          await retry(`${f.name} httpd up`, async () => {
            const r = await httpGet(host, ipOf(0, f), 80)
            return r.code === 0 ? r : undefined
          })
        }
        const sources: Array<[string, string, string]> = []
        for (const f of families) {
          sources.push(
            [`${f.name}: host netns -> host address:hostPort`, host, f.hostAddr],
            [`${f.name}: client netns -> host:hostPort (routed)`, client, f.clientGw],
            [`${f.name}: other container -> host address:hostPort`, containers[1]!, f.hostAddr],
            [`${f.name}: same container -> host address:hostPort (hairpin)`, containers[0]!, f.hostAddr],
          )
          if (f === V4) sources.push([`${f.name}: host netns -> 127.0.0.1:hostPort`, host, '127.0.0.1'])
        }
        const got: Record<string, string> = {}
        for (const [what, ns, ip] of sources) {
          const r = await httpGet(ns, ip, 8080)
          got[what] = r.code === 0 ? r.body : `failed (exit ${r.code})`
        }
        expect(got).toEqual(Object.fromEntries(sources.map(([w]) => [w, token])))
      })

      it('DEL both: the forward is gone and nothing is left', async () => {
        expect(results).toHaveLength(2)
        for (let i = 1; i >= 0; i--) {
          if (impl === 'reference') {
            await new ReferenceRunner({hostNetns: host, cniPath: REF_PATH}).del(conf, rtOf(i), results[i])
          } else {
            const r = await runCtrnet(host, ctrnetArgs('del', i))
            expect(r.code, describeFailure('ctrnet cni del', r)).toBe(0)
          }
        }
        for (const f of families) expect((await httpGet(host, f.hostAddr, 8080)).code).not.toBe(0)
        const state = await dumpState({hostNs: host, containerNs: containers, dataDirs: [join(dir, 'ipam')]})
        for (let i = 0; i < 2; i++) {
          const ips = results[i]!.ips!.map((x) => x.address)
          expect(leftovers(state, {network: conf.name, containerId: ids[i]!, ips})).toEqual([])
        }
      })
    })
  }
}
