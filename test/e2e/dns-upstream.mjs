// A stand-in for the host's resolver, run by the tests in a netns of their
// own: answers NAME with an A record of IP over UDP (and NXDOMAIN for any
// other name), on ADDRESS:53. Prints "ready" once bound.
// Usage: dns-upstream.mjs ADDRESS NAME IP
import dgram from 'node:dgram'
import packet from 'dns-packet'

const [address, name, ip] = process.argv.slice(2)
const s = dgram.createSocket('udp4')
s.on('message', (msg, rinfo) => {
  let q
  try {
    q = packet.decode(msg)
  } catch {
    return
  }
  const hit = q.questions?.[0]?.name?.toLowerCase() === name && q.questions[0].type === 'A'
  const r = {
    type: 'response',
    id: q.id,
    flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (hit ? 0 : 3),
    questions: q.questions,
    answers: hit ? [{type: 'A', name, ttl: 60, data: ip}] : [],
  }
  s.send(packet.encode(r), rinfo.port, rinfo.address)
})
s.bind(53, address, () => process.stdout.write('ready\n'))
