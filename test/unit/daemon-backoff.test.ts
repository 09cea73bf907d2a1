import {describe, expect, it} from 'vitest'
import {ATTACH_BACKOFF, AttachBackoff, attemptEpoch, holdAdds} from '../../src/app/daemon/backoff.js'
import {intentOf} from '../../src/netconf/labels.js'

/** A clock the test moves by hand. */
class Clock {
  t = 1_000_000
  now = () => this.t
  advance(ms: number) {
    this.t += ms
  }
}

const E1 = 'epoch-1'
const noNet = [{network: 'n', reason: 'no such network: n : not found'}]
const portTaken = [{network: 'n', reason: 'port 8080/tcp : is already published'}]

describe('daemon attach backoff (injected clock)', () => {
  it('1 s after the first failure, doubling, capped at 5 min', () => {
    const b = new AttachBackoff()
    expect([1, 2, 3, 4, 9, 10, 50, 5000].map((n) => b.delayAfter(n))).toEqual([1000, 2000, 4000, 8000, 256_000, 300_000, 300_000, 300_000])
    expect(ATTACH_BACKOFF).toEqual({firstMs: 1000, capMs: 300_000})
  })

  it('a container that never failed may try at once', () => {
    const b = new AttachBackoff()
    expect(b.heldUntil('ns-a', E1, 0)).toBeUndefined()
  })

  it('holds the adds until the next try, then lets one try through; each failure doubles the wait', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    const t0 = c.t
    b.failed('ns-a', E1, c.now(), noNet)
    expect(b.heldUntil('ns-a', E1, c.now())).toBe(t0 + 1000)
    c.advance(999)
    expect(b.heldUntil('ns-a', E1, c.now())).toBe(t0 + 1000)
    c.advance(1)
    expect(b.heldUntil('ns-a', E1, c.now())).toBeUndefined()
    b.failed('ns-a', E1, c.now(), noNet)
    expect(b.heldUntil('ns-a', E1, c.now())).toBe(c.t + 2000)
    c.advance(2000)
    b.failed('ns-a', E1, c.now(), noNet)
    expect(b.get('ns-a')).toMatchObject({count: 3, nextTry: c.t + 4000})
    // over a day of failures: never more than 5 min between two tries
    let tries = 3
    for (let until = c.t + 86_400_000; c.t < until; tries++) {
      c.t = b.get('ns-a')!.nextTry
      expect(b.heldUntil('ns-a', E1, c.now())).toBeUndefined()
      b.failed('ns-a', E1, c.now(), noNet)
      expect(b.get('ns-a')!.nextTry - c.t).toBeLessThanOrEqual(300_000)
    }
    expect(b.get('ns-a')!.nextTry - c.t).toBe(300_000)
    // 9 tries to reach the cap, then one per 5 min: a storm is impossible
    expect(tries).toBeLessThan(9 + 86_400_000 / 300_000 + 2)
  })

  it('one log line per change of reason: the same failure again is not logged, a new reason is', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    const logs: boolean[] = []
    const fail = (faults: typeof noNet) => {
      c.t = b.get('ns-a')?.nextTry ?? c.t
      logs.push(b.failed('ns-a', E1, c.now(), faults).log)
    }
    fail(noNet)
    fail(noNet)
    fail(noNet)
    fail(portTaken)
    fail(portTaken)
    fail(noNet)
    expect(logs).toEqual([true, false, false, true, false, true])
    // the wait keeps growing across a change of reason (still failing)
    expect(b.get('ns-a')!.count).toBe(6)
    // the same reasons in another order are the same failure
    const two = [...noNet, {reason: 'containerd : unavailable'}]
    expect(b.failed('ns-b', E1, c.now(), two).log).toBe(true)
    expect(b.failed('ns-b', E1, c.now(), [...two].reverse()).log).toBe(false)
  })

  it('a success starts afresh: the next failure waits 1 s and is logged', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    for (let i = 0; i < 5; i++) b.failed('ns-a', E1, c.now(), noNet)
    b.succeeded('ns-a')
    expect(b.heldUntil('ns-a', E1, c.now())).toBeUndefined()
    const again = b.failed('ns-a', E1, c.now(), noNet)
    expect(again).toMatchObject({log: true, failure: {count: 1, nextTry: c.t + 1000}})
  })

  it('a new task (netns) or new labels (intent) start afresh', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    const task1 = {task: {status: 'RUNNING' as const, netns: '/proc/10/ns/net'}, intent: intentOf({'ctrnet/networks': 'n'})}
    const task2 = {...task1, task: {status: 'RUNNING' as const, netns: '/proc/11/ns/net'}}
    const relabelled = {...task1, intent: intentOf({'ctrnet/networks': 'n', 'ctrnet/publish': '8081:80'})}
    // the same intent written another way is the same epoch
    const sameIntent = {...task1, intent: intentOf({'ctrnet/networks': ' n '})}
    expect(attemptEpoch(sameIntent)).toBe(attemptEpoch(task1))
    expect(attemptEpoch(task2)).not.toBe(attemptEpoch(task1))
    expect(attemptEpoch(relabelled)).not.toBe(attemptEpoch(task1))

    for (let i = 0; i < 4; i++) b.failed('ns-a', attemptEpoch(task1), c.now(), noNet)
    expect(b.heldUntil('ns-a', attemptEpoch(task1), c.now())).toBe(c.t + 8000)
    expect(b.heldUntil('ns-a', attemptEpoch(task2), c.now())).toBeUndefined()
    // forgotten, so its failure is the first of the new epoch: logged, 1 s
    expect(b.failed('ns-a', attemptEpoch(task2), c.now(), noNet)).toMatchObject({log: true, failure: {count: 1}})
    expect(b.heldUntil('ns-a', attemptEpoch(relabelled), c.now())).toBeUndefined()
    expect(b.get('ns-a')).toBeUndefined()
  })

  it('containers are held on their own; a deleted container is forgotten', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    b.failed('ns-bad', E1, c.now(), noNet)
    expect(b.heldUntil('ns-good', E1, c.now())).toBeUndefined()
    expect(b.heldUntil('ns-bad', E1, c.now())).toBe(c.t + 1000)
    b.keepOnly(new Set(['ns-good']))
    expect(b.get('ns-bad')).toBeUndefined()
    expect(b.heldUntil('ns-bad', E1, c.now())).toBeUndefined()
  })

  it('takes another policy', () => {
    const b = new AttachBackoff({firstMs: 100, capMs: 250})
    expect([1, 2, 3, 4].map((n) => b.delayAfter(n))).toEqual([100, 200, 250, 250])
  })
})

describe('the plan\'s adds under backoff', () => {
  const add = (id: string, network: string) => ({namespace: 'ns', id, cid: `ns-${id}`, intent: {network, publish: [], aliases: []}})
  const running = (pid: number) => ({task: {status: 'RUNNING' as const, netns: `/proc/${pid}/ns/net`}, intent: intentOf({'ctrnet/networks': 'n1,n2'})})

  it('holds every add of a container in backoff, none of the others; gives the earliest next try', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    const cs = new Map([
      ['ns-a', running(1)],
      ['ns-b', running(2)],
      ['ns-c', running(3)],
    ])
    b.failed('ns-a', attemptEpoch(cs.get('ns-a')!), c.now(), noNet)
    b.failed('ns-b', attemptEpoch(cs.get('ns-b')!), c.now() - 500, noNet)
    const adds = [add('a', 'n1'), add('a', 'n2'), add('b', 'n1'), add('c', 'n1')]
    const h = holdAdds(adds, cs, b, c.now())
    expect(h.adds.map((a) => a.cid)).toEqual(['ns-c'])
    expect(h.held).toBe(2)
    expect(h.nextTry).toBe(c.t + 500)
    c.advance(500)
    expect(holdAdds(adds, cs, b, c.now())).toMatchObject({held: 1, nextTry: c.t + 500})
    c.advance(500)
    expect(holdAdds(adds, cs, b, c.now())).toEqual({adds, held: 0, nextTry: undefined})
  })

  it('a restarted task of a held container is tried at once', () => {
    const c = new Clock()
    const b = new AttachBackoff()
    b.failed('ns-a', attemptEpoch(running(1)), c.now(), noNet)
    const h = holdAdds([add('a', 'n1')], new Map([['ns-a', running(2)]]), b, c.now())
    expect(h).toMatchObject({held: 0, nextTry: undefined})
    expect(h.adds).toHaveLength(1)
  })
})
