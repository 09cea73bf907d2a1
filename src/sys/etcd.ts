/**
 * A small etcd v3 client over etcd's JSON gRPC gateway (HTTP/1.1, or HTTPS
 * with a CA and client certificate): ranges, puts, transactions, leases and
 * watches. Keys and values are strings here; the gateway takes and gives them base64-encoded, and int64
 * fields (revisions, lease ids) as decimal strings, which stay strings here.
 *
 * Every failure is an EtcdError whose message names etcd and the endpoint:
 * `etcd http://10.0.0.10:2379: connect ECONNREFUSED ...`. Endpoints are tried
 * in order; the first one that answers is used for the call.
 */

import {readFileSync} from 'node:fs'
import type * as http from 'node:http'
import type * as https from 'node:https'
import {type HttpModules, etcdHttpLoader} from './etcd-port.js'

// http, https and tls (~5 ms) are loaded at a client's first call, not with
// this module: every `cni add` loads the overlay plugin, and few reach etcd.
// The loader is the one the command boundary handed in (etcd-port.ts).
let netMods: Promise<HttpModules> | undefined
function net(): Promise<HttpModules> {
  const load = etcdHttpLoader()
  if (!load) return Promise.reject(new EtcdError('etcd: no HTTP client was handed in (sys/etcd-port.ts handEtcdHttp)'))
  return (netMods ??= load())
}

export class EtcdError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'EtcdError'
  }
}

export interface KeyValue {
  key: string
  value: string
  createRevision: string
  modRevision: string
  /** the etcd lease id the key is attached to, '0' when none */
  lease: string
}

export interface RangeResult {
  revision: string
  kvs: KeyValue[]
}

export interface Compare {
  key: string
  target: 'CREATE' | 'MOD' | 'VERSION' | 'VALUE' | 'LEASE'
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'
  /** the value compared with, as the gateway names it for the target */
  createRevision?: string
  modRevision?: string
  version?: string
  value?: string
  lease?: string
}

export type TxnOp = {put: {key: string; value: string; lease?: string}} | {range: {key: string; rangeEnd?: string}} | {delete: {key: string; rangeEnd?: string}}

interface RawKv {
  key?: string
  value?: string
  create_revision?: string
  mod_revision?: string
  lease?: string
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
const unb64 = (s: string | undefined): string => (s ? Buffer.from(s, 'base64').toString('utf8') : '')

/** The end of the range of every key that starts with prefix (etcd's prefix convention; ASCII prefixes). */
export function prefixEnd(prefix: string): string {
  if (!/^[\x21-\x7e]+$/.test(prefix)) throw new EtcdError(`etcd: refused key prefix ${JSON.stringify(prefix)} (printable ASCII only)`)
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
}

function kv(raw: RawKv): KeyValue {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    createRevision: raw.create_revision ?? '0',
    modRevision: raw.mod_revision ?? '0',
    lease: raw.lease ?? '0',
  }
}

/** Parses a comma-separated endpoint list: http(s)://host:port URLs. */
export function parseEndpoints(text: string): string[] {
  const out: string[] = []
  for (const part of text.split(',')) {
    const t = part.trim()
    let u: URL
    try {
      u = new URL(t)
    } catch {
      throw new EtcdError(`etcd: invalid endpoint ${JSON.stringify(t)} (want http://host:port)`)
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new EtcdError(`etcd: invalid endpoint ${JSON.stringify(t)} (want http:// or https://)`)
    if (u.pathname !== '/' || u.search || u.hash || u.username) throw new EtcdError(`etcd: invalid endpoint ${JSON.stringify(t)} (no path, query or user)`)
    out.push(u.origin)
  }
  if (out.length === 0) throw new EtcdError('etcd: no endpoint')
  return out
}

function causeOf(err: unknown): string {
  const e = err as {name?: string; code?: string; message?: string; cause?: {code?: string; message?: string}}
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'no answer (timed out)'
  // OpenSSL's own messages are long and say no more than the code
  if (e?.code) return `${e.code}${e.message && !e.message.startsWith(e.code) && !/SSL routines/.test(e.message) ? ` (${e.message})` : ''}`
  if (e?.cause?.code) return `${e.cause.code}${e.cause.message ? ` (${e.cause.message})` : ''}`
  return e?.cause?.message ?? e?.message ?? String(err)
}

/** A failed TLS handshake or certificate check (not a network failure). */
function tlsFailure(err: unknown): boolean {
  const code = (err as {code?: unknown})?.code
  return typeof code === 'string' && /^(ERR_SSL_|ERR_TLS_)|CERT|UNABLE_TO_|SELF_SIGNED/.test(code)
}

/** Files (PEM) for TLS to etcd: a client certificate and key (both or neither), and the CA that signed etcd's certificate. */
export interface EtcdTls {
  cert?: string
  key?: string
  ca?: string
}

export interface EtcdOptions {
  /** per call, from connect to the whole answer; watches have none */
  timeoutMs?: number
  tls?: EtcdTls
}

/** A TLS file option's value: an absolute path without control characters. */
export function isTlsFilePath(v: string): boolean {
  // eslint-disable-next-line no-control-regex
  return v.startsWith('/') && !/[\x00-\x1f\x7f]/.test(v)
}

/** Checks TLS file options against the endpoints; a problem in one line, or undefined. */
export function tlsProblem(endpoints: string[], tls: EtcdTls | undefined): string | undefined {
  if (!tls || (!tls.cert && !tls.key && !tls.ca)) return undefined
  if (Boolean(tls.cert) !== Boolean(tls.key)) return 'etcd-cert and etcd-key go together'
  for (const [k, v] of [['etcd-cert', tls.cert], ['etcd-key', tls.key], ['etcd-ca', tls.ca]] as const) {
    if (v !== undefined && !isTlsFilePath(v)) return `${k} must be an absolute file path, not ${JSON.stringify(v)}`
  }
  const plain = endpoints.find((e) => !e.startsWith('https:'))
  if (plain) return `TLS files are given but endpoint ${plain} is not https://`
  return undefined
}

/** An idle kept-alive connection is closed after this long. */
const IDLE_MS = 30_000

/** The gateway's answer to one POST: status and body text. */
interface Answer {
  status: number
  text: string
}

export class EtcdClient {
  readonly timeoutMs: number
  private readonly tls: EtcdTls | undefined
  private agents: {http?: http.Agent; https?: https.Agent} = {}

  /**
   * Calls go over Node's http/https modules (not fetch: loading undici costs
   * a short-lived CLI process more than the calls themselves) through a
   * keep-alive agent, so the calls of one ADD share one connection and one
   * TLS handshake. Idle sockets do not keep the process alive.
   */
  constructor(
    readonly endpoints: string[],
    opts: EtcdOptions = {},
  ) {
    if (endpoints.length === 0) throw new EtcdError('etcd: no endpoint')
    const why = tlsProblem(endpoints, opts.tls)
    if (why) throw new EtcdError(`etcd: ${why}`)
    this.timeoutMs = opts.timeoutMs ?? 3000
    this.tls = opts.tls
  }

  private agent(ep: string, mods: HttpModules): http.Agent {
    if (!ep.startsWith('https:')) return (this.agents.http ??= new mods.http.Agent({keepAlive: true, timeout: IDLE_MS}))
    if (!this.agents.https) {
      const read = (k: string, f: string | undefined): Buffer | undefined => {
        if (f === undefined) return undefined
        try {
          return readFileSync(f)
        } catch (err) {
          throw new EtcdError(`etcd: cannot read ${k} ${f}: ${causeOf(err)}`)
        }
      }
      this.agents.https = new mods.https.Agent({keepAlive: true, timeout: IDLE_MS, cert: read('etcd-cert', this.tls?.cert), key: read('etcd-key', this.tls?.key), ca: read('etcd-ca', this.tls?.ca)})
    }
    return this.agents.https
  }

  /** Closes the idle connections (a long-lived caller that is done with this client). */
  close(): void {
    this.agents.http?.destroy()
    this.agents.https?.destroy()
    this.agents = {}
  }

  /**
   * Starts a POST of JSON to one endpoint and resolves with the response
   * (headers read); the caller reads the body. `signal` aborts the exchange
   * (a unary call's deadline, or the end of a watch).
   */
  async request(ep: string, path: string, body: unknown, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const data = JSON.stringify(body)
    const mods = await net()
    const agent = this.agent(ep, mods)
    const mod = ep.startsWith('https:') ? mods.https : mods.http
    return new Promise((resolve, reject) => {
      const req = mod.request(`${ep}${path}`, {
        method: 'POST',
        agent,
        headers: {'content-type': 'application/json', 'content-length': Buffer.byteLength(data)},
        signal,
      })
      req.once('response', resolve)
      // a keep-alive connection the server closed while idle: the request never reached it
      req.once('error', (err: Error & {reused?: boolean}) => reject(Object.assign(err, {reused: req.reusedSocket})))
      req.end(data)
    })
  }

  /** One unary exchange within timeoutMs: the whole answer, or a thrown cause. */
  private exchange(ep: string, path: string, body: unknown): Promise<Answer> {
    const signal = AbortSignal.timeout(this.timeoutMs)
    return this.request(ep, path, body, signal).then(
      (res) =>
        new Promise<Answer>((resolve, reject) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.once('end', () => resolve({status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8')}))
          res.once('error', reject)
          res.once('aborted', () => reject(new Error('connection closed mid-answer')))
        }),
    )
  }

  /** One gateway call: POST JSON, JSON back; an HTTP or gateway error is an EtcdError. */
  private async call<T>(path: string, body: unknown): Promise<T> {
    let last = ''
    for (const ep of this.endpoints) {
      let res: Answer
      try {
        res = await this.exchange(ep, path, body).catch((err: {reused?: boolean; code?: string}) => {
          if (err.reused && err.code === 'ECONNRESET') return this.exchange(ep, path, body)
          throw err
        })
      } catch (err) {
        if (err instanceof EtcdError) throw err
        last = `etcd ${ep}: ${tlsFailure(err) ? 'TLS failed' : 'unreachable'}: ${causeOf(err)}`
        continue
      }
      // streaming calls (keepalive) answer one JSON document per line
      const first = res.text.split('\n').find((l) => l.trim()) ?? '{}'
      let doc: Record<string, unknown>
      try {
        doc = JSON.parse(first) as Record<string, unknown>
      } catch {
        throw new EtcdError(`etcd ${ep}: ${path}: not a JSON answer (HTTP ${res.status})`)
      }
      const ok = res.status >= 200 && res.status < 300
      const err = (doc.error as {message?: string} | string | undefined) ?? (ok ? undefined : `HTTP ${res.status}`)
      if (err !== undefined) {
        const msg = typeof err === 'string' ? err : (err.message ?? JSON.stringify(err))
        throw new EtcdError(`etcd ${ep}: ${path}: ${msg}`)
      }
      return ((doc.result as T | undefined) ?? (doc as T)) as T
    }
    throw new EtcdError(last)
  }

  async range(key: string, rangeEnd?: string): Promise<RangeResult> {
    const body: Record<string, string> = {key: b64(key)}
    if (rangeEnd !== undefined) body.range_end = b64(rangeEnd)
    const r = await this.call<{header?: {revision?: string}; kvs?: RawKv[]}>('/v3/kv/range', body)
    return {revision: r.header?.revision ?? '0', kvs: (r.kvs ?? []).map(kv)}
  }

  /** Every key under prefix. */
  async rangePrefix(prefix: string): Promise<RangeResult> {
    return this.range(prefix, prefixEnd(prefix))
  }

  async put(key: string, value: string, lease?: string): Promise<void> {
    await this.call('/v3/kv/put', {key: b64(key), value: b64(value), ...(lease && lease !== '0' ? {lease} : {})})
  }

  async delete(key: string): Promise<void> {
    await this.call('/v3/kv/deleterange', {key: b64(key)})
  }

  /** A transaction: true when every compare held (then `success` ran, else `failure`). */
  async txn(compare: Compare[], success: TxnOp[], failure: TxnOp[] = []): Promise<boolean> {
    const cmp = compare.map((c) => {
      const o: Record<string, string> = {key: b64(c.key), target: c.target, result: c.result}
      if (c.createRevision !== undefined) o.create_revision = c.createRevision
      if (c.modRevision !== undefined) o.mod_revision = c.modRevision
      if (c.version !== undefined) o.version = c.version
      if (c.value !== undefined) o.value = b64(c.value)
      if (c.lease !== undefined) o.lease = c.lease
      return o
    })
    const op = (t: TxnOp): Record<string, unknown> => {
      if ('put' in t) return {request_put: {key: b64(t.put.key), value: b64(t.put.value), ...(t.put.lease && t.put.lease !== '0' ? {lease: t.put.lease} : {})}}
      if ('range' in t) return {request_range: {key: b64(t.range.key), ...(t.range.rangeEnd ? {range_end: b64(t.range.rangeEnd)} : {})}}
      return {request_delete_range: {key: b64(t.delete.key), ...(t.delete.rangeEnd ? {range_end: b64(t.delete.rangeEnd)} : {})}}
    }
    const r = await this.call<{succeeded?: boolean}>('/v3/kv/txn', {compare: cmp, success: success.map(op), failure: failure.map(op)})
    return r.succeeded === true
  }

  /** Grants a lease of ttl seconds; returns its id. */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    const r = await this.call<{ID?: string}>('/v3/lease/grant', {TTL: String(ttlSeconds)})
    if (!r.ID) throw new EtcdError(`etcd ${this.endpoints[0]}: /v3/lease/grant: no lease id in the answer`)
    return r.ID
  }

  /** Renews a lease once; returns its new TTL in seconds, 0 when the lease no longer exists. */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.call<{TTL?: string}>('/v3/lease/keepalive', {ID: id})
    return Number(r.TTL ?? 0)
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', {ID: id})
    } catch (err) {
      if (/lease not found/.test((err as Error).message)) return
      throw err
    }
  }
}

export interface WatchEvent {
  type: 'PUT' | 'DELETE'
  key: string
}

/**
 * Watches every key under prefix from `startRevision` (or now) on the first
 * endpoint that answers: `onEvents` gets each batch etcd streams, `onReady`
 * once the watch is created. Resolves when the stream ends or `signal`
 * aborts; rejects (EtcdError) when it cannot be set up or breaks.
 */
export async function watchPrefix(
  client: EtcdClient,
  prefix: string,
  handlers: {onReady?: () => void; onEvents: (events: WatchEvent[]) => void},
  signal: AbortSignal,
  startRevision?: string,
): Promise<void> {
  const req: Record<string, unknown> = {key: b64(prefix), range_end: b64(prefixEnd(prefix))}
  if (startRevision) req.start_revision = startRevision
  let last = ''
  for (const ep of client.endpoints) {
    let res: http.IncomingMessage
    try {
      res = await client.request(ep, '/v3/watch', {create_request: req}, signal)
    } catch (err) {
      if (signal.aborted) return
      if (err instanceof EtcdError) throw err
      last = `etcd ${ep}: ${tlsFailure(err) ? 'TLS failed' : 'unreachable'}: ${causeOf(err)}`
      continue
    }
    if (res.statusCode !== 200) {
      res.destroy()
      throw new EtcdError(`etcd ${ep}: /v3/watch: HTTP ${res.statusCode}`)
    }
    res.setEncoding('utf8')
    let buf = ''
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        buf += chunk
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim()
          buf = buf.slice(nl + 1)
          if (!line) continue
          const doc = JSON.parse(line) as {result?: {created?: boolean; canceled?: boolean; cancel_reason?: string; events?: Array<{type?: string; kv?: RawKv}>}; error?: unknown}
          if (doc.error !== undefined) throw new EtcdError(`etcd ${ep}: /v3/watch: ${typeof doc.error === 'string' ? doc.error : JSON.stringify(doc.error)}`)
          const r = doc.result ?? {}
          if (r.canceled) throw new EtcdError(`etcd ${ep}: /v3/watch canceled: ${r.cancel_reason ?? 'no reason'}`)
          if (r.created) handlers.onReady?.()
          if (r.events?.length) handlers.onEvents(r.events.map((e) => ({type: e.type === 'DELETE' ? 'DELETE' : 'PUT', key: unb64(e.kv?.key)})))
        }
      }
    } catch (err) {
      if (signal.aborted) return
      if (err instanceof EtcdError) throw err
      throw new EtcdError(`etcd ${ep}: /v3/watch: ${causeOf(err)}`)
    } finally {
      res.destroy()
    }
    if (signal.aborted) return
    // the server ended the stream (etcd stopped): the caller resyncs and watches again
    return
  }
  throw new EtcdError(last)
}
