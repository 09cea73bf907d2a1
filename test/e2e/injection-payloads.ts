/**
 * The injection corpus of the security issue: hostile strings built on a
 * valid value of a field. Shared by test/e2e/injection.test.ts (every
 * request field) and the daemon's label cases (test/e2e/daemon-bad-labels.ts).
 */

export const fullwidth = (s: string) => [...s].map((ch) => (ch >= '!' && ch <= '~' ? String.fromCharCode(ch.charCodeAt(0) + 0xfee0) : ch)).join('')

export interface Payload {
  name: string
  make: (base: string, pathLike: boolean) => string
  /** cannot travel in argv or the environment */
  nul?: boolean
}

/** Hostile strings, built on a valid value of the field (so only the payload makes them wrong). */
export const PAYLOADS: Payload[] = [
  {name: 'newline --flush', make: (b) => `${b}\n--flush\n#`},
  {name: '" -j ACCEPT"', make: (b) => `${b} -j ACCEPT`},
  {name: '" ! -s 10.91.0.7"', make: (b) => `${b} ! -s 10.91.0.7`},
  {name: 'double quote', make: (b) => `${b}"`},
  {name: 'single quote', make: (b) => `${b}'`},
  {name: '#', make: (b) => `${b}#`},
  {name: 'NUL', make: (b) => `${b}\0`, nul: true},
  {name: '5000 characters', make: (b) => b + 'A'.repeat(5000 - b.length)},
  {name: 'U+2028', make: (b) => `${b}\u2028`},
  // a path keeps its leading part: a full-width "／" would make it relative
  {name: 'full-width', make: (b, pathLike) => (pathLike ? `${b}ＡＤＭＩＮ` : fullwidth(b))},
]
