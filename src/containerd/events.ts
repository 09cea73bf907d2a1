import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {CtrnetError} from '../sys/errors.js'

/**
 * containerd's event service: Subscribe, and the payloads ctrnet reads
 * (task and container events), decoded from their google.protobuf.Any by
 * type_url. The protos are compiled on the first subscription only.
 */

/** The protos of the event service and of the payloads it decodes (one root). */
export const EVENT_PROTO_FILES = ['services/events/v1/events.proto', 'events/task.proto', 'events/container.proto']

/**
 * Compiles the event service with the payload messages in the same root.
 * `json: true` makes protobufjs decode every google.protobuf.Any whose
 * type_url names a message of that root (the type name after the last '/');
 * an Any of any other type stays `{type_url, value}`.
 */
export function loadEventsService(protosDir: string): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(EVENT_PROTO_FILES, {
    includeDirs: [protosDir],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
    json: true,
  })
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: {services: {events: {v1: {Events: grpc.ServiceClientConstructor}}}}
  }
  return pkg.containerd.services.events.v1.Events
}

// ---------------------------------------------------------------------------
// Plain data

export interface TaskStart {
  type: 'TaskStart'
  containerId: string
  pid: number
}

export interface TaskExit {
  type: 'TaskExit'
  containerId: string
  /** The exec id; equal to containerId for the task's init process. */
  id: string
  pid: number
  exitStatus: number
  exitedAt?: Date
}

export interface TaskDelete {
  type: 'TaskDelete'
  containerId: string
  /** The exec id; empty (or containerId) for the task's init process. */
  id: string
  pid: number
  exitStatus: number
  exitedAt?: Date
}

export interface ContainerCreate {
  type: 'ContainerCreate'
  id: string
  image: string
  runtime?: string
}

export interface ContainerUpdate {
  type: 'ContainerUpdate'
  id: string
  image: string
  labels: Record<string, string>
}

export interface ContainerDelete {
  type: 'ContainerDelete'
  id: string
}

export type EventPayload = TaskStart | TaskExit | TaskDelete | ContainerCreate | ContainerUpdate | ContainerDelete

export interface ContainerdEvent {
  namespace: string
  /** e.g. `/tasks/start`, `/containers/delete`. */
  topic: string
  timestamp: Date
  /** The payload's type name, the type_url without any `<host>/` prefix, e.g. `containerd.events.TaskExit`. */
  typeUrl: string
  /** The decoded payload; undefined for the types ctrnet does not decode (typeUrl names them). */
  event: EventPayload | undefined
}

// ---------------------------------------------------------------------------
// Decoding

/** A google.protobuf.Timestamp as proto-loader gives it (longs as numbers). */
export interface Timestamp {
  seconds?: number
  nanos?: number
}

/** An Envelope as the Subscribe stream's deserializer gives it (json: true). */
export interface RawEnvelope {
  timestamp?: Timestamp | null
  namespace?: string
  topic?: string
  /** Either a decoded message with `@type`, or an Any left as is. */
  event?: ({'@type'?: string; type_url?: string} & Record<string, unknown>) | null
}

export function toDate(t: Timestamp | null | undefined): Date | undefined {
  if (!t) return undefined
  return new Date((t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6))
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '')
const num = (v: unknown): number => (typeof v === 'number' ? v : 0)

/** The type name of a type_url: what follows its last '/'. */
export function typeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1)
}

/** The payload of a decoded Any, by its type name; undefined for the types we do not read. */
function payload(name: string, m: Record<string, unknown>): EventPayload | undefined {
  switch (name) {
    case 'containerd.events.TaskStart':
      return {type: 'TaskStart', containerId: str(m.containerId), pid: num(m.pid)}
    case 'containerd.events.TaskExit':
      return {
        type: 'TaskExit',
        containerId: str(m.containerId),
        id: str(m.id),
        pid: num(m.pid),
        exitStatus: num(m.exitStatus),
        exitedAt: toDate(m.exitedAt as Timestamp | null),
      }
    case 'containerd.events.TaskDelete':
      return {
        type: 'TaskDelete',
        containerId: str(m.containerId),
        id: str(m.id),
        pid: num(m.pid),
        exitStatus: num(m.exitStatus),
        exitedAt: toDate(m.exitedAt as Timestamp | null),
      }
    case 'containerd.events.ContainerCreate': {
      const runtime = (m.runtime as {name?: string} | null | undefined)?.name
      return {type: 'ContainerCreate', id: str(m.id), image: str(m.image), ...(runtime ? {runtime} : {})}
    }
    case 'containerd.events.ContainerUpdate':
      return {type: 'ContainerUpdate', id: str(m.id), image: str(m.image), labels: {...((m.labels as Record<string, string> | null) ?? {})}}
    case 'containerd.events.ContainerDelete':
      return {type: 'ContainerDelete', id: str(m.id)}
    default:
      return undefined
  }
}

/** An envelope of the Subscribe stream as plain data. */
export function toContainerdEvent(env: RawEnvelope): ContainerdEvent {
  const any = env.event ?? {}
  const decoded = typeof any['@type'] === 'string'
  const typeUrl = typeName(decoded ? any['@type']! : str(any.type_url))
  return {
    namespace: env.namespace ?? '',
    topic: env.topic ?? '',
    timestamp: toDate(env.timestamp) ?? new Date(0),
    typeUrl,
    event: decoded ? payload(typeUrl, any) : undefined,
  }
}

// ---------------------------------------------------------------------------
// The stream

type ServerStream = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<RawEnvelope>

/**
 * Subscribe as an async iterable. The call starts at the first next() and is
 * cancelled when the consumer stops (break, return, throw), when the signal
 * aborts (the iterator then ends), or ends on its own when the stream breaks
 * (the iterator then throws `broken(err, established)`). containerd never ends a
 * subscription itself, so a stream that ends without an error throws too.
 */
export async function* eventStream(
  stub: grpc.Client,
  filters: string[],
  signal: AbortSignal | undefined,
  broken: (err: grpc.ServiceError | undefined, established: boolean) => Error,
  track: (cancel: () => void) => () => void,
): AsyncGenerator<ContainerdEvent, void, undefined> {
  if (signal?.aborted) return
  const fn = (stub as unknown as Record<string, ServerStream>).Subscribe!.bind(stub)
  // No namespace header: containerd sends the events of every namespace
  // unless a filter (namespace==<ns>) says otherwise.
  const call = fn({filters}, new grpc.Metadata(), {})
  const queue: RawEnvelope[] = []
  let ended = false
  let established = false
  let error: grpc.ServiceError | undefined
  let wake: (() => void) | undefined
  const poke = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  // containerd answers with its headers once the subscription is in place
  call.on('metadata', () => (established = true))
  call.on('data', (env: RawEnvelope) => {
    queue.push(env)
    poke()
  })
  // An error is recorded; the stream ends at 'end' (grpc-js pushes the end
  // before it emits the error, and 'end' comes after the buffered data).
  call.on('error', (err: grpc.ServiceError) => {
    error ??= err
    poke()
  })
  const finish = () => {
    ended = true
    poke()
  }
  call.on('end', finish)
  call.on('close', finish)
  const onAbort = () => poke()
  signal?.addEventListener('abort', onAbort)
  const untrack = track(() => call.cancel())
  try {
    for (;;) {
      if (signal?.aborted) return
      const env = queue.shift()
      if (env) {
        yield toContainerdEvent(env)
        continue
      }
      if (ended) throw broken(error, established)
      await new Promise<void>((resolve) => (wake = resolve))
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    untrack()
    if (!ended) call.cancel()
  }
}

/** The error of a broken or ended event stream. */
export function streamError(address: string, err: grpc.ServiceError | undefined): Error {
  const why = err ? `the event stream broke: ${err.details || err.message}` : 'the event stream ended'
  const out = new CtrnetError(`containerd at ${address}`, why)
  ;(out as Error & {grpcCode?: number}).grpcCode = err?.code
  return out
}
