import {describe, expect, it} from 'vitest'
import {dnsNamesOf, hostsNamesOf} from '../../src/app/names.js'

const ID = '3f4e9a0c1b2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f'

describe('the names of a container on a network', () => {
  it('nerdctl/name, full id, short id, then the aliases of that network only', () => {
    // a DNS label holds at most 63 octets (RFC 1035 2.3.4): a 64-character id cannot be a name; a shorter one is
    const labels0 = {'nerdctl/name': 'web'}
    expect(dnsNamesOf({id: ID.slice(0, 63), labels: labels0}, 'a')).toEqual(['web', ID.slice(0, 63), ID.slice(0, 12)])
    const labels = {'nerdctl/name': 'web', 'ctrnet/networks': '[{"network":"a","aliases":["api","API2"]},{"network":"b","aliases":["other"]}]'}
    expect(dnsNamesOf({id: ID, labels}, 'a')).toEqual(['web', ID.slice(0, 12), 'api', 'API2'])
    expect(dnsNamesOf({id: ID, labels}, 'b')).toEqual(['web', ID.slice(0, 12), 'other'])
    expect(dnsNamesOf({id: ID, labels}, 'c')).toEqual(['web', ID.slice(0, 12)])
    // hosts lines: never the 64-character id
    expect(hostsNamesOf({id: ID, labels}, 'a')).toEqual(['web', 'api', 'API2'])
    expect(hostsNamesOf({id: ID, labels: {}}, 'a')).toEqual([ID.slice(0, 12)])
  })

  it('a label value that is not a DNS name is never served; a label that does not parse gives no aliases', () => {
    expect(dnsNamesOf({id: ID, labels: {'nerdctl/name': 'bad name;rm'}}, 'a')).toEqual([ID.slice(0, 12)])
    expect(dnsNamesOf({id: ID, labels: {'ctrnet/networks': '[{"network":"a","aliases":["x y"]}]'}}, 'a')).toEqual([ID.slice(0, 12)])
    expect(dnsNamesOf({id: 'short', labels: {'nerdctl/name': 'short'}}, 'a')).toEqual(['short'])
  })
})
