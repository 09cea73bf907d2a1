/**
 * The containerd client and usage lookup against a fake containerd: a grpc-js
 * server on a unix socket in a temp dir serving the vendored protos, with
 * Containers.ListStream left unimplemented (as on a daemon without it).
 */
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ContainerdClient, PROTO_FILES, protosDir} from '../../src/containerd/client.js'
import {inspectContainers, networkUsers} from '../../src/app/usage.js'

type Handler = grpc.UntypedHandleCall

interface FakeContainer {
  id: string
  labels: Record<string, string>
}

const state: {
  namespaces: string[]
  containers: Record<string, FakeContainer[]>
  tasks: Record<string, Array<{id: string; pid: number; status: string}>>
  seenNamespaces: string[]
  updates: unknown[]
  listFilters: string[][]
  hang: boolean
} = {namespaces: [], containers: {}, tasks: {}, seenNamespaces: [], updates: [], listFilters: [], hang: false}

let dir: string
let sock: string
let server: grpc.Server

function ns(call: {metadata: grpc.Metadata}): string {
  const v = String(call.metadata.get('containerd-namespace')[0] ?? '')
  state.seenNamespaces.push(v)
  return v
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'h4x-fake-'))
  sock = join(dir, 'containerd.sock')
  const def = protoLoader.loadSync(PROTO_FILES, {includeDirs: [protosDir()], keepCase: false, longs: Number, enums: String, defaults: true})
  const pkg = grpc.loadPackageDefinition(def) as any
  const s = pkg.containerd.services
  server = new grpc.Server()
  server.addService(s.namespaces.v1.Namespaces.service, {
    List: ((call: any, cb: any) => {
      ns(call)
      cb(null, {namespaces: state.namespaces.map((name) => ({name, labels: {}}))})
    }) as Handler,
  })
  server.addService(s.containers.v1.Containers.service, {
    // ListStream deliberately missing: grpc-js answers UNIMPLEMENTED
    Get: ((call: any, cb: any) => {
      if (state.hang) return
      const c = (state.containers[ns(call)] ?? []).find((x) => x.id === call.request.id)
      if (!c) return cb({code: grpc.status.NOT_FOUND, details: `container "${call.request.id}" in namespace: not found`})
      cb(null, {container: c})
    }) as Handler,
    List: ((call: any, cb: any) => {
      state.listFilters.push(call.request.filters)
      let list = state.containers[ns(call)] ?? []
      // the one filter the usage lookup sends: label presence
      if (call.request.filters.includes('labels."nerdctl/networks"')) list = list.filter((c) => 'nerdctl/networks' in c.labels)
      cb(null, {containers: list})
    }) as Handler,
    Update: ((call: any, cb: any) => {
      ns(call)
      state.updates.push(call.request)
      cb(null, {container: call.request.container})
    }) as Handler,
  })
  server.addService(s.tasks.v1.Tasks.service, {
    Get: ((call: any, cb: any) => {
      const t = (state.tasks[ns(call)] ?? []).find((x) => x.id === call.request.containerId)
      if (!t) return cb({code: grpc.status.NOT_FOUND, details: 'no running task found: not found'})
      cb(null, {process: t})
    }) as Handler,
    List: ((call: any, cb: any) => {
      cb(null, {tasks: state.tasks[ns(call)] ?? []})
    }) as Handler,
  })
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  )
})

afterAll(() => {
  server?.forceShutdown()
  rmSync(dir, {recursive: true, force: true})
})

describe('vendored protos', () => {
  it('load with proto-loader without any warning', () => {
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.message)
    const origWarn = console.warn
    const origErr = console.error
    console.warn = (...a: unknown[]) => warnings.push(a.join(' '))
    console.error = (...a: unknown[]) => warnings.push(a.join(' '))
    process.on('warning', onWarning)
    try {
      const def = protoLoader.loadSync(PROTO_FILES, {includeDirs: [protosDir()]})
      expect(Object.keys(def)).toEqual(
        expect.arrayContaining([
          'containerd.services.namespaces.v1.Namespaces',
          'containerd.services.containers.v1.Containers',
          'containerd.services.tasks.v1.Tasks',
          'containerd.v1.types.Process',
        ]),
      )
    } finally {
      process.off('warning', onWarning)
      console.warn = origWarn
      console.error = origErr
    }
    expect(warnings).toEqual([])
  })

  it('keep the field numbers containerd 1.6 and 1.7 use on the wire', () => {
    const def = protoLoader.loadSync(PROTO_FILES, {includeDirs: [protosDir()], keepCase: true}) as any
    const fields = (type: string) =>
      Object.fromEntries((def[type].type.field as Array<{name: string; number: number}>).map((f) => [f.name, f.number]))
    expect(fields('containerd.services.containers.v1.Container')).toMatchObject({id: 1, labels: 2, image: 3, runtime: 4, spec: 5})
    expect(fields('containerd.services.containers.v1.UpdateContainerRequest')).toEqual({container: 1, update_mask: 2})
    expect(fields('containerd.services.containers.v1.ListContainersRequest')).toEqual({filters: 1})
    expect(fields('containerd.services.tasks.v1.GetRequest')).toEqual({container_id: 1, exec_id: 2})
    expect(fields('containerd.v1.types.Process')).toMatchObject({container_id: 1, id: 2, pid: 3, status: 4, exit_status: 9})
    expect(fields('containerd.services.namespaces.v1.Namespace')).toEqual({name: 1, labels: 2})
  })
})

describe('ContainerdClient against a fake containerd', () => {
  it('sends the namespace header, falls back from ListStream to List, maps NOT_FOUND', async () => {
    state.namespaces = ['default', 'other']
    state.containers = {other: [{id: 'abc', labels: {'nerdctl/name': 'web'}}]}
    state.tasks = {other: [{id: 'abc', pid: 4242, status: 'RUNNING'}]}
    state.seenNamespaces = []
    const c = await ContainerdClient.connect({address: sock, namespace: 'other'})
    try {
      expect(await c.listNamespaces()).toEqual(['default', 'other'])
      const list = await c.listContainers()
      expect(list.map((x) => [x.id, x.labels])).toEqual([['abc', {'nerdctl/name': 'web'}]])
      expect((await c.getContainer('abc'))?.id).toBe('abc')
      expect(await c.getContainer('nope')).toBeUndefined()
      expect(await c.getTask('abc')).toMatchObject({id: 'abc', pid: 4242, status: 'RUNNING'})
      expect(await c.getTask('nope')).toBeUndefined()
      expect(await c.listContainers([], 'default')).toEqual([])
    } finally {
      c.close()
    }
    expect(state.seenNamespaces).toContain('other')
    expect(state.seenNamespaces).toContain('default')
  })

  it('updates one label through a field mask', async () => {
    state.updates = []
    const c = await ContainerdClient.connect({address: sock, namespace: 'other'})
    try {
      await c.setLabel('abc', 'nerdctl/networks', '["net1"]')
      await c.setLabel('abc', 'nerdctl/networks', undefined)
    } finally {
      c.close()
    }
    expect(state.updates).toMatchObject([
      {container: {id: 'abc', labels: {'nerdctl/networks': '["net1"]'}}, updateMask: {paths: ['labels.nerdctl/networks']}},
      {container: {id: 'abc', labels: {}}, updateMask: {paths: ['labels.nerdctl/networks']}},
    ])
  })

  it('gives up after the deadline with a plain sentence', async () => {
    state.hang = true
    const c = await ContainerdClient.connect({address: sock, namespace: 'other', timeoutMs: 300})
    try {
      await expect(c.getContainer('abc')).rejects.toThrow('containerd at ' + sock + ' : no answer to Get within 0.3s')
    } finally {
      c.close()
      state.hang = false
    }
  })

  it('says when there is no containerd, or nothing listens on the socket', async () => {
    const missing = join(dir, 'missing.sock')
    await expect(ContainerdClient.connect({address: missing, namespace: 'x'})).rejects.toThrow(
      `cannot reach containerd at ${missing} : is it running, and are you root?`,
    )
    const notSock = join(dir, 'plain-file')
    writeFileSync(notSock, '')
    await expect(ContainerdClient.connect({address: notSock, namespace: 'x'})).rejects.toThrow('not a unix socket')
  })
})

describe('usage lookup', () => {
  const cacheDir = () => join(dir, 'cache')
  const result = {
    cniVersion: '1.0.0',
    interfaces: [{name: 'br-x'}, {name: 'vethabc', mac: '11:22:33:44:55:66'}, {name: 'eth1', mac: 'aa:bb:cc:dd:ee:ff', sandbox: '/proc/4242/ns/net'}],
    ips: [
      {address: '10.44.1.7/24', gateway: '10.44.1.1', interface: 2},
      {address: 'fd00::7/64', gateway: 'fd00::1', interface: 2},
    ],
  }

  beforeAll(() => {
    mkdirSync(join(cacheDir(), 'results'), {recursive: true})
    const entry = (cid: string, netns: string) =>
      JSON.stringify({kind: 'cniCacheV1', containerId: cid, config: '', ifName: 'eth1', networkName: 'net1', netns, result})
    // a ctrnet attachment without label, in namespace "other"
    writeFileSync(join(cacheDir(), 'results', 'net1-other-abc-eth1'), entry('other-abc', '/proc/4242/ns/net'))
    // a stale one of a stopped container
    writeFileSync(join(cacheDir(), 'results', 'net1-other-old-eth1'), entry('other-old', '/proc/999/ns/net'))
  })

  it('finds running and paused users in every namespace, by label or cache', async () => {
    state.namespaces = ['default', 'other']
    state.containers = {
      default: [
        {id: 'd1', labels: {'nerdctl/networks': '["net1","net2"]', 'nerdctl/name': 'one'}},
        {id: 'd2', labels: {'nerdctl/networks': '["net2"]'}},
        {id: 'd3', labels: {'nerdctl/networks': '["net1"]'}},
        {id: 'd4', labels: {'nerdctl/networks': '["host"]'}},
      ],
      other: [
        {id: 'abc', labels: {'nerdctl/name': 'web'}},
        {id: 'old', labels: {}},
      ],
    }
    state.tasks = {
      default: [
        {id: 'd1', pid: 10, status: 'PAUSED'},
        {id: 'd2', pid: 11, status: 'RUNNING'},
        {id: 'd3', pid: 0, status: 'STOPPED'},
      ],
      other: [
        {id: 'abc', pid: 4242, status: 'RUNNING'},
        {id: 'old', pid: 0, status: 'STOPPED'},
      ],
    }
    const opts = {address: sock, namespace: 'default', cacheDir: cacheDir()}
    expect(await networkUsers(opts, 'net1')).toEqual([
      {namespace: 'default', id: 'd1', name: 'one', status: 'PAUSED'},
      {namespace: 'other', id: 'abc', name: 'web', status: 'RUNNING'},
    ])
    expect(await inspectContainers(opts, 'net1')).toEqual({
      d1: {Name: 'one', MacAddress: '', IPv4Address: '', IPv6Address: '', DNSNames: ['one', 'd1']},
      abc: {Name: 'web', MacAddress: 'aa:bb:cc:dd:ee:ff', IPv4Address: '10.44.1.7/24', IPv6Address: 'fd00::7/64', DNSNames: ['web', 'abc']},
    })
    expect(await networkUsers(opts, 'net9')).toEqual([])
  })

  it('answers nobody when no socket exists at the address', async () => {
    const opts = {address: join(dir, 'absent.sock'), namespace: 'default', cacheDir: cacheDir()}
    expect(await networkUsers(opts, 'net1')).toEqual([])
    expect(await inspectContainers(opts, 'net1')).toEqual({})
  })

  it('fails when a socket exists but nothing answers', async () => {
    const {createServer} = await import('node:net')
    const dead = join(dir, 'dead.sock')
    const srv = createServer((s) => s.destroy())
    await new Promise<void>((r) => srv.listen(dead, r))
    try {
      await expect(networkUsers({address: dead, namespace: 'default', cacheDir: cacheDir()}, 'net1')).rejects.toThrow(/cannot reach containerd at/)
    } finally {
      srv.close()
    }
  })
})
