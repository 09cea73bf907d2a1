/**
 * ContainerdClient.subscribe against a real containerd (a private daemon on
 * its own socket, see containerd-harness.ts): a container's life seen as
 * events in order, an aborted subscription ends, and containerd going away
 * ends the subscription with an error instead of leaving it hanging.
 * The client comes from dist/ (npm run build).
 */
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {PrivateContainerd, ROOT} from './containerd-harness.js'

const NS = 'evt'
const FILTERS = ['topic~="/tasks/"', 'topic~="/containers/"']
let ctrd: PrivateContainerd
let client: any

interface Seen {
  namespace: string
  topic: string
  typeUrl: string
  event: any
}

/** Collects a subscription's events until it ends; `done` settles with its end (undefined) or error. */
function collect(iterable: AsyncIterable<Seen>): {seen: Seen[]; done: Promise<Error | undefined>} {
  const seen: Seen[] = []
  const done = (async () => {
    try {
      for await (const ev of iterable) seen.push(ev)
      return undefined
    } catch (err) {
      return err as Error
    }
  })()
  return {seen, done}
}

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A promise's value, or a failure naming what did not happen within ms. */
async function within<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

let probes = 0
/**
 * Waits until the subscription is in place (containerd replays nothing): creates
 * probe containers until one's /containers/create is seen, then removes them.
 */
async function subscribed(seen: Seen[]): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const id = `evt-probe-${++probes}`
    ctrd.createContainer(NS, id)
    try {
      await until(`the /containers/create of ${id}`, () => seen.some((e) => e.topic === '/containers/create' && e.event?.id === id), 1000)
      return
    } catch (err) {
      if (Date.now() > deadline) throw err
    } finally {
      ctrd.removeContainer(NS, id)
    }
  }
}

/** The events of one container, as (topic, container id, namespace). */
function of(seen: Seen[], id: string): Array<{topic: string; id: string; namespace: string; pid?: number; execId?: string}> {
  return seen
    .filter((e) => (e.event?.containerId ?? e.event?.id) === id)
    .map((e) => ({
      topic: e.topic,
      id: e.event.containerId ?? e.event.id,
      namespace: e.namespace,
      ...(e.event.pid !== undefined ? {pid: e.event.pid} : {}),
      ...(e.event.containerId !== undefined && e.event.id !== undefined ? {execId: e.event.id} : {}),
    }))
}

beforeAll(async () => {
  ctrd = new PrivateContainerd('evt')
  await ctrd.start()
  const {ContainerdClient} = await import(pathToFileURL(join(ROOT, 'dist', 'containerd', 'client.js')).href)
  client = await ContainerdClient.connect({address: ctrd.address, namespace: NS})
})

afterAll(async () => {
  client?.close()
  await ctrd?.stop()
})

describe('containerd events', () => {
  it("see a container's life in order, and end when the subscription is aborted", async () => {
    const ac = new AbortController()
    const sub = collect(client.subscribe(FILTERS, ac.signal))
    await subscribed(sub.seen)

    const id = 'evt-life'
    const pid = ctrd.runContainer(NS, id)
    await ctrd.killTask(NS, id)
    ctrd.removeContainer(NS, id)
    await until(`the /containers/delete of ${id}`, () => sub.seen.some((e) => e.topic === '/containers/delete' && e.event?.id === id))

    const life = of(sub.seen, id)
    const want = [
      {topic: '/containers/create', id, namespace: NS},
      {topic: '/tasks/start', id, namespace: NS, pid},
      {topic: '/tasks/exit', id, namespace: NS, pid, execId: id},
      {topic: '/tasks/delete', id, namespace: NS, pid},
      {topic: '/containers/delete', id, namespace: NS},
    ]
    // each wanted event, in this order (others, e.g. /tasks/create, may come between)
    let at = 0
    for (const w of want) {
      const i = life.findIndex((e, j) => j >= at && Object.entries(w).every(([k, v]) => e[k as keyof typeof e] === v))
      expect(i, `${JSON.stringify(w)} after position ${at} in ${JSON.stringify(life, null, 1)}`).toBeGreaterThanOrEqual(at)
      at = i + 1
    }
    // only the filtered topics came through, each with a decoded payload
    for (const e of sub.seen) {
      expect(e.topic).toMatch(/^\/(tasks|containers)\//)
      if (/^\/(tasks\/(start|exit|delete)|containers\/(create|update|delete))$/.test(e.topic)) expect(e.event, e.topic).toBeDefined()
    }

    ac.abort()
    expect(await within(sub.done, 'the end of the aborted subscription')).toBeUndefined()
  })

  it('ends with an error, not a hang, when containerd goes away', async () => {
    const sub = collect(client.subscribe(FILTERS))
    await subscribed(sub.seen)
    await ctrd.stop()
    const err = await within(sub.done, 'the error of the subscription after containerd stopped', 30_000)
    expect(err).toBeInstanceOf(Error)
    expect(err!.message).toMatch(new RegExp(`^containerd at ${ctrd.address} : the event stream (broke|ended)`))
  })
})
