// Helpers of the DNS server unit tests: a client over UDP and TCP (dns-packet
// for the wire format), a server started on a free loopback port, and a tiny
// upstream that records what it gets.
import dgram from 'node:dgram'
import net from 'node:net'
import dnsPacket, {type DecodedPacket, type Packet} from 'dns-packet'
import {DnsServer, type DnsServerOptions} from '../../src/services/dns/server.js'

export interface Target {
  address: string
  port: number
}

let nextPort = 20000 + ((process.pid * 97) % 30000)

/** A port that is free for UDP and TCP on these addresses, right now. */
export async function freePort(addresses: string[]): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = nextPort++
    if (nextPort > 60000) nextPort = 20000
    const ok = await Promise.all(addresses.flatMap((a) => [canBind('udp', a, port), canBind('tcp', a, port)]))
    if (ok.every(Boolean)) return port
  }
  throw new Error('no free port')
}

function canBind(kind: 'udp' | 'tcp', address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (kind === 'udp') {
      const s = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4')
      s.once('error', () => resolve(false))
      s.bind({address, port, exclusive: true}, () => s.close(() => resolve(true)))
    } else {
      const s = net.createServer()
      s.once('error', () => resolve(false))
      s.listen({host: address, port, exclusive: true}, () => s.close(() => resolve(true)))
    }
  })
}

/** A DnsServer listening for `network` on these loopback addresses (retries on a port taken meanwhile). */
export async function startServer(opts: Omit<DnsServerOptions, 'port'>, network: string, addresses: string[]): Promise<{server: DnsServer; port: number}> {
  for (let i = 0; i < 10; i++) {
    const port = await freePort(addresses)
    const server = new DnsServer({...opts, port})
    const failed = await server.listen(network, addresses)
    if (failed.length === 0) return {server, port}
    await server.close()
    if (!failed.every((f) => f.code === 'EADDRINUSE')) throw new Error(`listen: ${JSON.stringify(failed)}`)
  }
  throw new Error('could not start a DNS server')
}

export function query(name: string, type: 'A' | 'AAAA' | 'PTR' | 'MX' | 'TXT' | 'ANY' = 'A', extra: Partial<Packet> = {}): Packet {
  return {
    type: 'query',
    id: Math.floor(Math.random() * 65536),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{type, name, class: 'IN'}],
    ...extra,
  }
}

/** One UDP exchange; rejects after timeoutMs without an answer. */
export function udpAsk(t: Target, packet: Packet | Buffer, timeoutMs = 3000): Promise<DecodedPacket & {rcode: string}> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(t.address) ? 'udp6' : 'udp4')
    const timer = setTimeout(() => {
      s.close()
      reject(new Error(`no UDP answer from ${t.address}#${t.port} in ${timeoutMs} ms`))
    }, timeoutMs)
    s.on('error', (err) => {
      clearTimeout(timer)
      s.close()
      reject(err)
    })
    s.on('message', (m) => {
      clearTimeout(timer)
      s.close()
      resolve(dnsPacket.decode(m) as DecodedPacket & {rcode: string})
    })
    s.send(Buffer.isBuffer(packet) ? packet : dnsPacket.encode(packet), t.port, t.address)
  })
}

/** Sends these queries on one TCP connection (in one write), returns the answers in order of arrival. */
export function tcpAsk(t: Target, packets: Packet[], {timeoutMs = 3000, halfClose = false} = {}): Promise<Array<DecodedPacket & {rcode: string}>> {
  return new Promise((resolve, reject) => {
    const s = net.connect({host: t.address, port: t.port})
    const answers: Array<DecodedPacket & {rcode: string}> = []
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`TCP: ${answers.length} of ${packets.length} answers in ${timeoutMs} ms`))
    }, timeoutMs)
    s.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    s.on('connect', () => {
      s.write(Buffer.concat(packets.map((p) => dnsPacket.streamEncode(p))))
      if (halfClose) s.end()
    })
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const p = buf.length >= 2 ? dnsPacket.streamDecode(buf) : null
        if (!p) break
        answers.push(p as DecodedPacket & {rcode: string})
        buf = buf.subarray(2 + dnsPacket.streamDecode.bytes)
      }
      if (answers.length === packets.length) {
        clearTimeout(timer)
        s.destroy()
        resolve(answers)
      }
    })
  })
}

/** Resolves when the socket is closed by the other side (or rejects after timeoutMs). */
export function closedWithin(s: net.Socket, timeoutMs: number): Promise<number> {
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve(0)
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs)
    s.on('close', () => {
      clearTimeout(timer)
      resolve(Date.now() - t0)
    })
  })
}

export function connect(t: Target): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({host: t.address, port: t.port})
    s.on('error', () => undefined)
    s.once('connect', () => resolve(s))
    s.once('error', reject)
  })
}

/** A UDP socket that receives and never answers (a black-hole upstream); counts what it got. */
export async function silentUdp(address: string): Promise<{port: number; got: () => number; close: () => Promise<void>}> {
  const s = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4')
  let n = 0
  s.on('message', () => n++)
  await new Promise<void>((r) => s.bind({address, port: 0}, () => r()))
  return {port: s.address().port, got: () => n, close: () => new Promise((r) => s.close(() => r()))}
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
