/**
 * Bad `ctrnet/networks` / `ctrnet/publish` labels: the injection payloads
 * (injection-payloads.ts) in every field a label carries (network names in
 * both forms, port specs in both places, ip, ip6, ifname, aliases), values
 * of the wrong type, and malformed lists. Each must be refused by the label
 * parser with one line naming `field`. Pure data: test/unit/daemon-labels
 * checks the refusals, test/e2e/daemon-bad-input runs them in containers
 * under a running daemon.
 */
import {PAYLOADS} from './injection-payloads.js'

export const BAD_NET = 'dbinet' // the valid network the cases are built on

export interface LabelCase {
  name: string
  labels: Record<string, string>
  /** what the refusal must name */
  field: RegExp
}

const N = 'ctrnet/networks'
const P = 'ctrnet/publish'
const json = (entry: Record<string, unknown>) => JSON.stringify([{network: BAD_NET, ...entry}])

interface LabelField {
  name: string
  base: string
  put: (v: unknown) => Record<string, string>
  field: RegExp
  wrong?: unknown[]
}

const FIELDS: LabelField[] = [
  {name: 'networks (names)', base: BAD_NET, put: (v) => ({[N]: `${BAD_NET}2,${String(v)}`}), field: /^invalid label ctrnet\/networks: /},
  {name: 'networks[0].network', base: BAD_NET, put: (v) => ({[N]: JSON.stringify([{network: v}])}), field: /^invalid label ctrnet\/networks\[0\]\.network: /, wrong: [null, 5, {a: 1}, '', '-dbinet', 'a/b']},
  {
    name: 'publish',
    base: '18401:80',
    put: (v) => ({[N]: BAD_NET, [P]: `18403:80,${String(v)}`}),
    field: /^invalid label ctrnet\/publish: /,
    wrong: ['80:80:80:80', '99999:80', '0:80', '8080:80/icmp', '8080-8081:80', '[10.0.0.1]:80:80', '::1:80:80', '08080:80', '-1:80'],
  },
  {name: 'networks[0].publish[0]', base: '18401:80', put: (v) => ({[N]: json({publish: [v]})}), field: /^invalid label ctrnet\/networks\[0\]\.publish\[0\]: /, wrong: [18401, {hostPort: 1}, null]},
  {name: 'networks[0].ip', base: '10.46.9.50', put: (v) => ({[N]: json({ip: v})}), field: /label ctrnet\/networks\[0\]\.ip\b/, wrong: [5, ['10.46.9.50'], '10.46.9.50/24', 'fd00::50', '10.46.9.256', '010.46.9.50']},
  {name: 'networks[0].ip6', base: 'fd00::50', put: (v) => ({[N]: json({ip6: v})}), field: /label ctrnet\/networks\[0\]\.ip6\b/, wrong: [6, '10.46.9.50', 'fd00::50/64', 'fd00:::50']},
  {name: 'networks[0].ifname', base: 'eth5', put: (v) => ({[N]: json({ifname: v})}), field: /^invalid label ctrnet\/networks\[0\]\.ifname: /, wrong: [7, 'eth0/1', '.', '..', 'a'.repeat(16), '-eth0', 'eth:0']},
  {name: 'networks[0].aliases[0]', base: 'web', put: (v) => ({[N]: json({aliases: [v]})}), field: /^invalid label ctrnet\/networks\[0\]\.aliases\[0\]: /, wrong: [5, '-web', 'a..b', 'x'.repeat(64)]},
]

/** Lists that do not parse as a whole. */
const MALFORMED: LabelCase[] = [
  {name: 'networks: cut JSON', labels: {[N]: '[{"network":'}, field: /^invalid label ctrnet\/networks: /},
  {name: 'networks: an object, not a list', labels: {[N]: JSON.stringify({network: BAD_NET})}, field: /^invalid label ctrnet\/networks: /},
  {name: 'networks: aliases not a list', labels: {[N]: json({aliases: 'web'})}, field: /^invalid label ctrnet\/networks\[0\]\.aliases: /},
  {name: 'networks: publish not a list', labels: {[N]: json({publish: '18401:80'})}, field: /^invalid label ctrnet\/networks\[0\]\.publish: /},
  {name: 'networks: an unknown field', labels: {[N]: json({mac: '02:00:00:00:00:01'})}, field: /^invalid label ctrnet\/networks\[0\]\.mac: /},
  {name: 'networks: a number entry', labels: {[N]: '[42]'}, field: /^invalid label ctrnet\/networks\[0\]: /},
  {name: 'networks: one network twice', labels: {[N]: `${BAD_NET},${BAD_NET}`}, field: /^label ctrnet\/networks : names network dbinet twice/},
  {name: 'networks: an empty name between commas', labels: {[N]: `${BAD_NET},,x`}, field: /^invalid label ctrnet\/networks: /},
  // a blank: containerd drops a label whose value is empty (no label: not the daemon's business)
  {name: 'publish without a network', labels: {[N]: ' ', [P]: '18401:80'}, field: /^label ctrnet\/publish : /},
  {name: 'publish: an empty spec between commas', labels: {[N]: BAD_NET, [P]: '18401:80,,18402:80'}, field: /^invalid label ctrnet\/publish: /},
]

/** Every case: FIELDS x (PAYLOADS + wrong values), then MALFORMED. */
export function labelCases(): LabelCase[] {
  const out: LabelCase[] = []
  for (const f of FIELDS) {
    for (const p of PAYLOADS) out.push({name: `${f.name} = ${p.name}`, labels: f.put(p.make(f.base, false)), field: f.field})
    // the largest label containerd takes (4096 bytes, key and value): long, yet it gets to us
    out.push({name: `${f.name} = 3900 characters`, labels: f.put(f.base + 'A'.repeat(3900 - f.base.length)), field: f.field})
    for (const w of f.wrong ?? []) out.push({name: `${f.name} = ${JSON.stringify(w)}`, labels: f.put(w), field: f.field})
  }
  return [...out, ...MALFORMED]
}

/** Whether containerd can hold these labels, and ctr pass them in argv: no NUL, at most 4096 bytes per label. */
export function fitsContainerd(c: LabelCase): boolean {
  return Object.entries(c.labels).every(([k, v]) => !v.includes('\0') && Buffer.byteLength(k + v) <= 4096)
}
