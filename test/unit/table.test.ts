import {describe, expect, it} from 'vitest'
import {tabwriter} from '../../src/cli/table.js'

describe('tabwriter (docker/nerdctl table through cli-table3)', () => {
  it('matches nerdctl network ls byte for byte (issue 2 example)', () => {
    const out = tabwriter([
      ['NETWORK ID', 'NAME', 'FILE'],
      ['', 'containerd-net', '/etc/cni/net.d/10-containerd-net.conflist'],
      ['11c844f95e28', 'mynet', '/etc/cni/net.d/default/nerdctl-mynet.conflist'],
      ['', 'host', ''],
      ['', 'none', ''],
    ])
    expect(out).toBe(
      'NETWORK ID      NAME              FILE\n' +
        '                containerd-net    /etc/cni/net.d/10-containerd-net.conflist\n' +
        '11c844f95e28    mynet             /etc/cni/net.d/default/nerdctl-mynet.conflist\n' +
        // Go's tabwriter pads every tab-terminated cell, so these end in spaces
        '                host              \n' +
        '                none              \n',
    )
  })
  it('column width = widest cell + 4; header only', () => {
    expect(tabwriter([['NETWORK ID', 'NAME', 'FILE']])).toBe('NETWORK ID    NAME    FILE\n')
    expect(tabwriter([['a', 'b']])).toBe('a    b\n')
  })
  it('minwidth applies when padding is smaller', () => {
    expect(tabwriter([['a', 'b']], {minWidth: 6, padding: 1})).toBe('a     b\n')
  })
  it('no rows: no output', () => {
    expect(tabwriter([])).toBe('')
  })
})
