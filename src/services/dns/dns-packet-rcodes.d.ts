// dns-packet's RCODE table (the package ships no types for this file).
declare module 'dns-packet/rcodes.js' {
  /** the numeric RCODE of a name such as 'NXDOMAIN' */
  export function toRcode(code: string): number
  /** the name of a numeric RCODE */
  export function toString(rcode: number): string
}
