import {describe, expect, it} from 'vitest'
import {SingleFlight} from '../../src/app/daemon/single-flight.js'

describe('SingleFlight', () => {
  it('never runs twice at once; calls during a run make exactly one more run', async () => {
    let active = 0
    let most = 0
    let runs = 0
    const f = new SingleFlight(async () => {
      active++
      most = Math.max(most, active)
      runs++
      await new Promise((r) => setTimeout(r, 20))
      active--
    })
    const first = f.run()
    const during = [f.run(), f.run(), f.run()]
    await Promise.all([first, ...during])
    expect({runs, most}).toEqual({runs: 2, most: 1})
    await f.run()
    expect(runs).toBe(3)
  })

  it('a throwing run rejects its callers and ends the series; more() false stops the extra run', async () => {
    let runs = 0
    const bad = new SingleFlight(async () => {
      runs++
      throw new Error('boom')
    })
    await expect(bad.run()).rejects.toThrow('boom')
    await expect(bad.settled()).resolves.toBeUndefined()
    let stop = false
    let n = 0
    const f = new SingleFlight(
      async () => {
        n++
        stop = true
        await new Promise((r) => setTimeout(r, 5))
      },
      () => !stop,
    )
    await Promise.all([f.run(), f.run()])
    expect({runs, n}).toEqual({runs: 1, n: 1})
  })
})
