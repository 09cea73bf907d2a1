import {describe, expect, it} from 'vitest'
import {colorWanted} from '../../src/cli/color.js'

describe('colour on stderr', () => {
  it('is used on a terminal', () => {
    expect(colorWanted({}, true)).toBe(true)
  })
  it('is never used when NO_COLOR is set, even on a terminal or forced', () => {
    expect(colorWanted({NO_COLOR: '1'}, true)).toBe(false)
    expect(colorWanted({NO_COLOR: '1', FORCE_COLOR: '1'}, true)).toBe(false)
  })
  it('is not used in pipes unless forced', () => {
    expect(colorWanted({}, false)).toBe(false)
    expect(colorWanted({FORCE_COLOR: '1'}, false)).toBe(true)
    expect(colorWanted({FORCE_COLOR: '0'}, false)).toBe(false)
  })
})
