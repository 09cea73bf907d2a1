/**
 * The injection corpus of the security issue (test/e2e/injection.test.ts)
 * put into the daemon's labels, pure part: every payload in every field a
 * label carries is refused by intentOf with one line naming the label, and
 * never throws. The e2e twin, test/e2e/daemon-bad-input.test.ts, runs them
 * in containers under a running daemon.
 */
import {describe, expect, it} from 'vitest'
import {intentOf} from '../../src/netconf/labels.js'
import {labelCases} from '../fixtures/daemon-bad-labels.js'

describe('daemon labels: the injection corpus', () => {
  const cases = labelCases()
  it('has a case for every field and payload', () => {
    expect(cases.length).toBeGreaterThan(80)
  })
  for (const c of cases) {
    it(`refuses ${c.name}`, () => {
      const i = intentOf(c.labels)
      expect(i, JSON.stringify(c.labels)).toBeDefined()
      if (!i || !('refused' in i)) throw new Error(`accepted: ${JSON.stringify(i)}`)
      expect(i.refused).toMatch(c.field)
      // one line, printable: a label's payload never breaks the log line or the terminal
      expect(i.refused).not.toMatch(/[\n\r\u2028\u2029\0]/)
      expect(i.refused.length).toBeLessThan(400)
    })
  }
  it('spaces and tabs around items are still what a person may type', () => {
    expect(intentOf({'ctrnet/networks': ' a ,\tb ', 'ctrnet/publish': ' 8080:80 , 53:53/udp\t'})).toEqual({
      networks: [
        {network: 'a', aliases: [], publish: [{hostPort: 8080, containerPort: 80, protocol: 'tcp'}, {hostPort: 53, containerPort: 53, protocol: 'udp'}]},
        {network: 'b', aliases: [], publish: []},
      ],
    })
  })
})
