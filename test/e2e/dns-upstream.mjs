// A stand-in for the host's resolver, run by the tests in a netns of their
// own: answers NAME with an A record of IP (and NXDOMAIN for any other name)
// on ADDRESS port 53, over UDP and TCP. Prints "ready" once both are bound.
// Usage: dns-upstream.mjs ADDRESS NAME IP
import dgram from 'node:dgram'
import net from 'node:net'
import packet from 'dns-packet'

const [address, name, ip] = process.argv.slice(2)

function respond(q) {
  const hit = q.questions?.[0]?.name?.toLowerCase() === name && q.questions[0].type === 'A'
  return {
    type: 'response',
    id: q.id,
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (hit ? 0 : 3),
    questions: q.questions,
    answers: hit ? [{type: 'A', name, ttl: 60, data: ip}] : [],
  }
}

const udp = dgram.createSocket('udp4')
udp.on('message', (msg, rinfo) => {
  let q
  try {
    q = packet.decode(msg)
  } catch {
    return
  }
  udp.send(packet.encode(respond(q)), rinfo.port, rinfo.address)
})
const tcp = net.createServer((sock) => {
  let buf = Buffer.alloc(0)
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const len = buf.readUInt16BE(0)
      let q
      try {
        q = packet.streamDecode(buf.subarray(0, 2 + len))
      } catch {
        sock.destroy()
        return
      }
      buf = buf.subarray(2 + len)
      sock.write(packet.streamEncode(respond(q)))
    }
  })
  sock.on('error', () => undefined)
})
let bound = 0
const ready = () => ++bound === 2 && process.stdout.write('ready\n')
udp.bind(53, address, ready)
tcp.listen(53, address, ready)
