import dgram from 'node:dgram'
import net from 'node:net'
import {parseIp} from '../../kernel/ip/addr.js'
import {EMPTY, tcpFrameLength} from './wire.js'

/**
 * The upstream resolvers of the DNS server: their notation (`address` or
 * `address#port`, the nameservers of a resolv.conf) and one query's attempt
 * at one of them, over UDP or TCP (the server races them: server.ts forward).
 */

/** An upstream resolver, parsed. */
export interface Upstream {
  address: string
  port: number
  v6: boolean
}

/** glibc's MAXNS */
export const MAX_UPSTREAMS = 3

/** Parses `address` or `address#port`. Throws on anything else. */
export function parseUpstream(text: string): Upstream {
  const hash = text.lastIndexOf('#')
  const addr = hash < 0 ? text : text.slice(0, hash)
  const portText = hash < 0 ? '53' : text.slice(hash + 1)
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN
  if (!(port >= 1 && port <= 65535)) throw new Error(`invalid upstream DNS server ${JSON.stringify(text)}: port must be 1-65535`)
  let p: {v6: boolean; ip: string}
  try {
    p = parseIp(addr, {keepMapped: true})
  } catch {
    throw new Error(`invalid upstream DNS server ${JSON.stringify(text)}: not an IP address (address or address#port)`)
  }
  return {address: p.ip, port, v6: p.v6}
}

/**
 * The nameservers of a resolv.conf text, in order, at most 3 (glibc reads no
 * more); lines that are not `nameserver <IP>` are ignored, as are addresses
 * with a zone (`fe80::1%eth0`).
 */
export function upstreamsFromResolvConf(text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const words = line.replace(/[#;].*$/, '').trim().split(/\s+/)
    if (words[0] !== 'nameserver' || words.length < 2 || words[1].includes('%')) continue
    try {
      const p = parseIp(words[1], {keepMapped: true})
      if (!out.includes(p.ip)) out.push(p.ip)
    } catch {
      continue
    }
    if (out.length === MAX_UPSTREAMS) break
  }
  return out
}

/**
 * One query to one upstream over UDP, from its own connected socket (a fresh
 * source port per query). Calls fail once if the socket fails (ICMP refusal
 * included); answers that do not match are ignored. Returns its end.
 */
export function udpAttempt(up: Upstream, query: Buffer, accept: (resp: Buffer) => boolean, fail: () => void): () => void {
  const s = dgram.createSocket(up.v6 ? 'udp6' : 'udp4')
  let over = false
  const end = () => {
    if (over) return
    over = true
    s.close()
  }
  const failed = () => {
    if (over) return
    end()
    fail()
  }
  s.on('error', failed)
  s.on('message', (m) => void accept(m))
  s.connect(up.port, up.address, () => {
    if (!over) s.send(query, (err) => err && failed())
  })
  return end
}

/** One query to one upstream over TCP (the client's framed message as it came). Calls fail once on any error, close or non-matching answer. */
export function tcpAttempt(up: Upstream, frame: Buffer, accept: (resp: Buffer) => boolean, fail: () => void): () => void {
  const s = net.connect({host: up.address, port: up.port})
  let over = false
  let buf: Buffer = EMPTY
  const end = () => {
    if (over) return
    over = true
    s.destroy()
  }
  const failed = () => {
    if (over) return
    end()
    fail()
  }
  s.setNoDelay(true)
  s.on('connect', () => s.write(frame))
  s.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    if (buf.length < 2) return
    const len = tcpFrameLength(buf)
    if (buf.length < 2 + len) return
    if (!accept(buf.subarray(0, 2 + len))) failed()
  })
  s.on('error', failed)
  s.on('close', failed)
  return end
}
