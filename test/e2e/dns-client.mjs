// One DNS query, sent from whatever netns this process runs in (the tests
// run it with `nsenter --net` into a container's): dns-packet encodes and
// decodes, over UDP or TCP. Prints one JSON line: {rcode, answers, ms} or
// {error, ms}; sentAt is when the query left. Usage: dns-client.mjs SERVER PORT udp|tcp NAME TYPE [TIMEOUT_MS]
import dgram from 'node:dgram'
import net from 'node:net'
import packet from 'dns-packet'

const [server, port, proto, name, type, timeoutArg] = process.argv.slice(2)
const timeoutMs = Number(timeoutArg ?? 3000)
const query = {type: 'query', id: 4242, flags: packet.RECURSION_DESIRED, questions: [{type, name, class: 'IN'}]}
let started = Date.now()
const done = (o) => {
  process.stdout.write(JSON.stringify({...o, sentAt: started, ms: Date.now() - started}) + '\n')
  process.exit(0)
}
const answer = (buf) => {
  const r = proto === 'tcp' ? packet.streamDecode(buf) : packet.decode(buf)
  done({rcode: r.rcode, answers: (r.answers ?? []).map((a) => ({name: a.name, type: a.type, ttl: a.ttl, data: a.data}))})
}
setTimeout(() => done({error: 'timeout'}), timeoutMs)
if (proto === 'udp') {
  const s = dgram.createSocket(server.includes(':') ? 'udp6' : 'udp4')
  s.on('message', answer)
  s.on('error', (e) => done({error: e.code ?? e.message}))
  started = Date.now()
  s.send(packet.encode(query), Number(port), server)
} else {
  let buf = Buffer.alloc(0)
  started = Date.now()
  const c = net.connect({host: server, port: Number(port)}, () => c.write(packet.streamEncode(query)))
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d])
    if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) answer(buf)
  })
  c.on('error', (e) => done({error: e.code ?? e.message}))
}
