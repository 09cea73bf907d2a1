/**
 * containerd's event service: the payloads decoded from their Any by
 * type_url, from bytes encoded with the same vendored protos; and the
 * subscription as an async iterable against a fake event service (a grpc-js
 * server on a unix socket in a temp dir): abort, break, a broken stream and a
 * server that goes away end it, and the call never outlives it.
 */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {ContainerdClient, protosDir, type ContainerdEvent} from '../../src/containerd/client.js'
import {EVENT_PROTO_FILES, loadEventsService, toContainerdEvent, type RawEnvelope} from '../../src/containerd/events.js'

/** The service ctrnet decodes with (json: true: Any payloads decoded). */
const events = loadEventsService(protosDir())
/** The same protos without Any decoding: to build Any values byte for byte as containerd does. */
const plain = (() => {
  const def = protoLoader.loadSync(EVENT_PROTO_FILES, {includeDirs: [protosDir()], keepCase: false, longs: Number, defaults: true})
  return (grpc.loadPackageDefinition(def) as any).containerd.services.events.v1.Events as grpc.ServiceClientConstructor
})()

/** The payload's bytes, encoded with the vendored proto of its type. */
function payloadBytes(type: string, fields: Record<string, unknown>): Buffer {
  const env = events.service.Subscribe.responseSerialize({event: {'@type': type, ...fields}})
  // the well-known Any keeps its field names (type_url) whatever keepCase says
  const any = (plain.service.Subscribe.responseDeserialize(env) as {event: {type_url: string; value: Buffer}}).event
  expect(any.type_url).toBe(`/${type}`)
  return Buffer.from(any.value)
}

/** An Envelope's bytes as containerd sends them (type_url: the bare message name), decoded as ctrnet does. */
function roundTrip(typeUrl: string, value: Buffer): ContainerdEvent {
  const bytes = plain.service.Subscribe.responseSerialize({
    timestamp: {seconds: 1_700_000_000, nanos: 250_000_000},
    namespace: 'evt-ns',
    topic: '/some/topic',
    event: {type_url: typeUrl, value},
  })
  return toContainerdEvent(events.service.Subscribe.responseDeserialize(bytes) as RawEnvelope)
}

const exitedAt = {seconds: 1_700_000_001, nanos: 5_000_000}

describe('event payloads', () => {
  it('decode every type ctrnet reads by its type_url', () => {
    const cases: Array<[string, Record<string, unknown>, unknown]> = [
      ['containerd.events.TaskStart', {containerId: 'c1', pid: 4242}, {type: 'TaskStart', containerId: 'c1', pid: 4242}],
      [
        'containerd.events.TaskExit',
        {containerId: 'c1', id: 'c1', pid: 4242, exitStatus: 137, exitedAt},
        {type: 'TaskExit', containerId: 'c1', id: 'c1', pid: 4242, exitStatus: 137, exitedAt: new Date(1_700_000_001_005)},
      ],
      [
        'containerd.events.TaskDelete',
        {containerId: 'c1', id: '', pid: 4242, exitStatus: 1, exitedAt},
        {type: 'TaskDelete', containerId: 'c1', id: '', pid: 4242, exitStatus: 1, exitedAt: new Date(1_700_000_001_005)},
      ],
      [
        'containerd.events.ContainerCreate',
        {id: 'c1', image: 'docker.io/library/busybox:latest', runtime: {name: 'io.containerd.runc.v2'}},
        {type: 'ContainerCreate', id: 'c1', image: 'docker.io/library/busybox:latest', runtime: 'io.containerd.runc.v2'},
      ],
      [
        'containerd.events.ContainerUpdate',
        {id: 'c1', image: 'img', labels: {'ctrnet/networks': 'net1'}},
        {type: 'ContainerUpdate', id: 'c1', image: 'img', labels: {'ctrnet/networks': 'net1'}},
      ],
      ['containerd.events.ContainerDelete', {id: 'c1'}, {type: 'ContainerDelete', id: 'c1'}],
    ]
    for (const [type, fields, want] of cases) {
      const value = payloadBytes(type, fields)
      expect(value.length, type).toBeGreaterThan(0)
      for (const typeUrl of [type, `type.googleapis.com/${type}`]) {
        const ev = roundTrip(typeUrl, value)
        expect(ev, typeUrl).toEqual({
          namespace: 'evt-ns',
          topic: '/some/topic',
          timestamp: new Date(1_700_000_000_250),
          typeUrl: type,
          event: want,
        })
      }
    }
  })

  it('keep the type_url of a payload type they do not decode, with no payload', () => {
    const ev = roundTrip('containerd.events.ImageCreate', Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63]))
    expect(ev.typeUrl).toBe('containerd.events.ImageCreate')
    expect(ev.event).toBeUndefined()
    expect(ev.topic).toBe('/some/topic')
  })

  it('read an exec\'s exit apart from the init process\'s', () => {
    const ev = roundTrip('containerd.events.TaskExit', payloadBytes('containerd.events.TaskExit', {containerId: 'c1', id: 'exec1', pid: 7}))
    expect(ev.event).toMatchObject({type: 'TaskExit', containerId: 'c1', id: 'exec1', pid: 7, exitStatus: 0})
  })
})

// ---------------------------------------------------------------------------
// The subscription against a fake event service

interface Sub {
  filters: string[]
  call: grpc.ServerWritableStream<unknown, unknown>
  cancelled: boolean
}

let dir: string
let sock: string
let server: grpc.Server
let subs: Sub[] = []
let onSubscribe: (s: Sub) => void = () => {}

function envelope(topic: string, type: string, fields: Record<string, unknown>) {
  return {timestamp: {seconds: 1_700_000_000, nanos: 0}, namespace: 'evt-ns', topic, event: {'@type': type, ...fields}}
}

async function startServer(): Promise<void> {
  server = new grpc.Server()
  server.addService(events.service, {
    Subscribe: ((call: grpc.ServerWritableStream<{filters: string[]}, unknown>) => {
      const s: Sub = {filters: call.request.filters, call, cancelled: false}
      call.on('cancelled', () => (s.cancelled = true))
      subs.push(s)
      call.sendMetadata(new grpc.Metadata())
      onSubscribe(s)
    }) as grpc.UntypedHandleCall,
  })
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  )
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** next() of the iterator, or a failure naming what did not happen within ms. */
function nextWithin<T>(it: AsyncIterator<T>, what: string, ms = 5000): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    it.next(),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`iterator: no ${what} within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer))
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'evt-fake-'))
  sock = join(dir, 'containerd.sock')
  await startServer()
})

afterAll(() => {
  server?.forceShutdown()
  rmSync(dir, {recursive: true, force: true})
})

beforeEach(() => {
  subs = []
  onSubscribe = () => {}
})

describe('ContainerdClient.subscribe against a fake event service', () => {
  it('sends the filters, yields plain events, ends on abort and cancels the call', async () => {
    onSubscribe = (s) => {
      s.call.write(envelope('/tasks/start', 'containerd.events.TaskStart', {containerId: 'c1', pid: 11}))
      s.call.write(envelope('/tasks/exit', 'containerd.events.TaskExit', {containerId: 'c1', id: 'c1', pid: 11, exitStatus: 9}))
    }
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      const ac = new AbortController()
      const it = client.subscribe(['topic~="/tasks/"'], ac.signal)[Symbol.asyncIterator]()
      const a = await nextWithin(it, 'first event')
      expect(a.value).toMatchObject({namespace: 'evt-ns', topic: '/tasks/start', event: {type: 'TaskStart', containerId: 'c1', pid: 11}})
      const b = await nextWithin(it, 'second event')
      expect(b.value).toMatchObject({topic: '/tasks/exit', event: {type: 'TaskExit', exitStatus: 9}})
      expect(subs.map((s) => s.filters)).toEqual([['topic~="/tasks/"']])
      const pending = nextWithin(it, 'end after abort')
      ac.abort()
      expect(await pending).toEqual({done: true, value: undefined})
      await until('the server to see the call cancelled', () => subs[0].cancelled)
    } finally {
      client.close()
    }
  })

  it('does not call containerd when the signal is already aborted', async () => {
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      const ac = new AbortController()
      ac.abort()
      const seen: ContainerdEvent[] = []
      for await (const ev of client.subscribe([], ac.signal)) seen.push(ev)
      expect(seen).toEqual([])
      expect(subs).toEqual([])
    } finally {
      client.close()
    }
  })

  it('cancels the call when the consumer breaks out of the loop', async () => {
    onSubscribe = (s) => s.call.write(envelope('/containers/delete', 'containerd.events.ContainerDelete', {id: 'c9'}))
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      for await (const ev of client.subscribe()) {
        expect(ev.event).toEqual({type: 'ContainerDelete', id: 'c9'})
        break
      }
      await until('the server to see the call cancelled', () => subs.length === 1 && subs[0].cancelled)
    } finally {
      client.close()
    }
  })

  it('throws a CtrnetError when the stream breaks, after the events sent before', async () => {
    onSubscribe = (s) => {
      s.call.write(envelope('/tasks/start', 'containerd.events.TaskStart', {containerId: 'c2', pid: 5}))
      s.call.emit('error', {code: grpc.status.INTERNAL, details: 'failed while forwarding events'})
    }
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      const it = client.subscribe()[Symbol.asyncIterator]()
      expect((await nextWithin(it, 'event')).value).toMatchObject({event: {type: 'TaskStart', containerId: 'c2'}})
      await expect(nextWithin(it, 'error')).rejects.toThrow(/^containerd at .* : the event stream broke: failed while forwarding events$/)
    } finally {
      client.close()
    }
  })

  it('throws a CtrnetError when the stream ends', async () => {
    onSubscribe = (s) => s.call.end()
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      const it = client.subscribe()[Symbol.asyncIterator]()
      await expect(nextWithin(it, 'error')).rejects.toThrow(/: the event stream ended$/)
    } finally {
      client.close()
    }
  })

  it('throws when close() is called while subscribed', async () => {
    // an event first, so containerd has answered (before its answer, a failure is the client's usual error)
    onSubscribe = (s) => s.call.write(envelope('/tasks/start', 'containerd.events.TaskStart', {containerId: 'c3', pid: 7}))
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    const it = client.subscribe()[Symbol.asyncIterator]()
    expect((await nextWithin(it, 'first event')).value).toMatchObject({topic: '/tasks/start'})
    const pending = nextWithin(it, 'error after close()')
    client.close()
    await expect(pending).rejects.toThrow(/the event stream broke/)
    await until('the server to see the call cancelled', () => subs[0].cancelled)
  })

  it('throws, and does not hang, when containerd goes away', async () => {
    onSubscribe = (s) => s.call.write(envelope('/tasks/start', 'containerd.events.TaskStart', {containerId: 'c4', pid: 8}))
    const client = await ContainerdClient.connect({address: sock, namespace: 'unused'})
    try {
      const it = client.subscribe()[Symbol.asyncIterator]()
      expect((await nextWithin(it, 'first event')).value).toMatchObject({topic: '/tasks/start'})
      const pending = nextWithin(it, 'error after the server went away')
      server.forceShutdown()
      await expect(pending).rejects.toThrow(/^containerd at /)
    } finally {
      client.close()
      await startServer()
    }
  })
})
