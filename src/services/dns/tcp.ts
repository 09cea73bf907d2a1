import type net from 'node:net'
import type {Counters, StatKey} from './stats.js'
import {EMPTY, type Reply, tcpFrameLength} from './wire.js'

/**
 * One DNS client over TCP (RFC 7766): messages framed by their 2-byte length,
 * pipelined (up to TCP_PIPELINE in progress; beyond, the socket is paused),
 * each answered on its own, and closed when idle (no complete message for
 * idleMs while nothing is pending: a client trickling bytes is closed too),
 * oversized (checked on the length prefix), malformed, or not reading its
 * answers.
 */

/** queries of one TCP connection in progress at once; beyond, its socket is paused */
const TCP_PIPELINE = 16
/** answers a TCP client may leave unread before it is dropped */
const TCP_WRITE_LIMIT = 256 * 1024

export interface TcpClientOptions {
  idleMs: number
  maxMessageBytes: number
  counters: Counters
  /** one framed message: false when dropped as malformed (then reply is never called), else reply is called once */
  handle: (frame: Buffer, reply: Reply) => boolean
}

/** Serves one accepted connection. Returns its release (the idle timer and the buffer), for the caller to run once when the socket is gone. */
export function serveTcpClient(sock: net.Socket, o: TcpClientOptions): () => void {
  sock.setNoDelay(true)
  let buf: Buffer = EMPTY
  let pending = 0
  let pumping = false
  let ended = false
  let idle: NodeJS.Timeout | undefined
  const drop = (why?: StatKey) => {
    if (why) o.counters[why]++
    sock.destroy()
  }
  // The idle clock runs while nothing is pending, from the last answer (or
  // the connection); bytes of an incomplete message do not reset it.
  const idleClock = () => {
    if (pending > 0 || sock.destroyed) {
      clearTimeout(idle)
      idle = undefined
    } else if (idle === undefined) {
      idle = setTimeout(() => drop('tcpIdleClosed'), o.idleMs)
    }
  }
  const reply: Reply = (resp) => {
    pending--
    if (resp !== undefined && !sock.destroyed) {
      if (sock.writableLength > TCP_WRITE_LIMIT) drop('tcpWriteOverflow')
      else sock.write(resp)
    }
    if (!pumping) pump()
  }
  const pump = () => {
    pumping = true
    while (!sock.destroyed && pending < TCP_PIPELINE && buf.length >= 2) {
      const len = tcpFrameLength(buf)
      if (len > o.maxMessageBytes) return drop('tcpOversized')
      if (len === 0) {
        o.counters.received++
        return drop('malformed')
      }
      if (buf.length < 2 + len) break
      const frame = buf.subarray(0, 2 + len)
      buf = buf.length === 2 + len ? EMPTY : buf.subarray(2 + len)
      clearTimeout(idle)
      idle = undefined
      pending++
      if (!o.handle(frame, reply)) {
        pending--
        return drop()
      }
    }
    pumping = false
    if (sock.destroyed) return
    if (ended && pending === 0) {
      // the client sent its last query and has every answer
      sock.end()
      return
    }
    if (pending >= TCP_PIPELINE) sock.pause()
    else if (sock.isPaused()) sock.resume()
    idleClock()
  }
  idleClock()
  sock.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    if (!pumping) pump()
  })
  sock.on('end', () => {
    // half-closed after its queries: answer those, then close (an
    // incomplete message left over is dropped)
    ended = true
    buf = buf.length >= 2 && buf.length >= 2 + tcpFrameLength(buf) ? buf : EMPTY
    if (!pumping) pump()
  })
  return () => {
    clearTimeout(idle)
    idle = undefined
    buf = EMPTY
  }
}
