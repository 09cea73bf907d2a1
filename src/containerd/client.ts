import {accessSync, constants, statSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import {CtrnetError} from '../sys/errors.js'
import {eventStream, loadEventsService, streamError, toDate, type ContainerdEvent, type Timestamp} from './events.js'

export type {ContainerdEvent, EventPayload} from './events.js'

/**
 * A small gRPC client for the containerd API (namespaces, containers, tasks, events)
 * over its unix socket. The vendored protos are compiled on first connect.
 * Only the commands that talk to containerd load this module (each command
 * imports its use case when it runs), so the others never load grpc.
 */

/** The 16 MiB receive limit containerd's own client uses. */
export const MAX_RECV_BYTES = 16 << 20
/** Deadline of each call unless ClientOptions.timeoutMs says otherwise (CTRNET_CONTAINERD_TIMEOUT_MS). */
export const DEFAULT_TIMEOUT_MS = 10_000

export interface ClientOptions {
  /** Socket path, or `unix://<path>`. */
  address: string
  /** containerd namespace sent as the `containerd-namespace` header. */
  namespace: string
  timeoutMs?: number
}

export interface ContainerInfo {
  id: string
  labels: Record<string, string>
  image: string
  runtime?: {name: string}
  /** The OCI spec (containerd stores it as JSON in an Any). */
  spec?: {type_url?: string; value?: Buffer}
  snapshotter?: string
}

export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING'

export interface TaskInfo {
  /** The container id (containerd fills `id`, not `containerId`, for a task's init process). */
  id: string
  pid: number
  status: TaskStatus
  exitStatus: number
  /** When the process exited; undefined while it runs (containerd sends a zero timestamp) */
  exitedAt?: Date
}

/** A task as proto-loader decodes it. */
type RawTask = Omit<TaskInfo, 'exitedAt'> & {exitedAt?: Timestamp | null}

function taskInfo(raw: RawTask): TaskInfo {
  const {exitedAt, ...rest} = raw
  return {...rest, exitedAt: exitedAt?.seconds ? toDate(exitedAt) : undefined}
}

/** The socket path of an address given as a path or as `unix://<path>`. */
export function socketPath(address: string): string {
  if (address.startsWith('unix://')) return address.slice('unix://'.length)
  if (address.startsWith('unix:')) return address.slice('unix:'.length)
  return address
}

/** Whether something exists at the socket path (a dead socket still counts). */
export function socketExists(address: string): boolean {
  try {
    statSync(socketPath(address))
    return true
  } catch (err) {
    // EACCES on a parent dir: something may well be there; let connect say why.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR'
  }
}

function unreachable(address: string): CtrnetError {
  return new CtrnetError(`cannot reach containerd at ${address}`, 'is it running, and are you root?')
}

function denied(address: string): CtrnetError {
  return new CtrnetError(`cannot reach containerd at ${address}`, 'permission denied on the socket (run as root, or as a user allowed to use it)')
}

/** Checks the socket before dialling, so the common failures get plain words. */
function checkSocket(address: string): void {
  const path = socketPath(address)
  let st
  try {
    st = statSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES') throw denied(address)
    throw unreachable(address)
  }
  if (!st.isSocket()) throw new CtrnetError(`cannot reach containerd at ${address}`, 'not a unix socket')
  try {
    accessSync(path, constants.R_OK | constants.W_OK)
  } catch {
    throw denied(address)
  }
}

// ---------------------------------------------------------------------------
// The protos, compiled once

interface Services {
  Namespaces: grpc.ServiceClientConstructor
  Containers: grpc.ServiceClientConstructor
  Tasks: grpc.ServiceClientConstructor
}

let services: Services | undefined
/** The event service, compiled on the first subscription only. */
let eventsService: grpc.ServiceClientConstructor | undefined

/** protos/ at the package root (dist/containerd/.. or src/containerd/..). */
export function protosDir(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'protos')
}

export const PROTO_FILES = [
  'services/namespaces/v1/namespace.proto',
  'services/containers/v1/containers.proto',
  'services/tasks/v1/tasks.proto',
]

function loadServices(): Services {
  const def = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [protosDir()],
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  })
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: {
      services: {
        namespaces: {v1: {Namespaces: grpc.ServiceClientConstructor}}
        containers: {v1: {Containers: grpc.ServiceClientConstructor}}
        tasks: {v1: {Tasks: grpc.ServiceClientConstructor}}
      }
    }
  }
  const s = pkg.containerd.services
  return {Namespaces: s.namespaces.v1.Namespaces, Containers: s.containers.v1.Containers, Tasks: s.tasks.v1.Tasks}
}

// ---------------------------------------------------------------------------

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void

export class ContainerdClient {
  /** Cancels the event subscriptions still open (close() ends them). */
  private readonly subscriptions = new Set<() => void>()
  private events?: grpc.Client

  private constructor(
    readonly address: string,
    readonly namespace: string,
    private readonly timeoutMs: number,
    private readonly ns: grpc.Client,
    private readonly containers: grpc.Client,
    private readonly tasks: grpc.Client,
  ) {}

  /** Checks the socket, compiles the protos (once) and makes the stubs (no I/O yet). */
  static async connect(opts: ClientOptions): Promise<ContainerdClient> {
    checkSocket(opts.address)
    services ??= loadServices()
    const target = `unix://${socketPath(opts.address)}`
    const chanOpts = {
      'grpc.max_receive_message_length': MAX_RECV_BYTES,
      'grpc.max_send_message_length': MAX_RECV_BYTES,
    }
    const creds = grpc.credentials.createInsecure()
    const nsc = new services.Namespaces(target, creds, chanOpts)
    // The three stubs share one channel.
    const channelOverride = nsc.getChannel()
    const cc = new services.Containers(target, creds, {...chanOpts, channelOverride})
    const tc = new services.Tasks(target, creds, {...chanOpts, channelOverride})
    return new ContainerdClient(opts.address, opts.namespace, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, nsc, cc, tc)
  }

  close(): void {
    for (const cancel of [...this.subscriptions]) cancel()
    this.ns.close()
  }

  private md(namespace?: string): grpc.Metadata {
    const md = new grpc.Metadata()
    md.set('containerd-namespace', namespace ?? this.namespace)
    return md
  }

  private callOpts(): grpc.CallOptions {
    return {deadline: Date.now() + this.timeoutMs}
  }

  private unary<T>(client: grpc.Client, method: string, req: unknown, namespace?: string): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client)
    return new Promise((resolve, reject) => {
      fn(req, this.md(namespace), this.callOpts(), (err, res) => {
        if (err) reject(this.wrap(err, method))
        else resolve(res as T)
      })
    })
  }

  /** Turns a gRPC error into a sentence (the raw code stays on `.grpcCode`). */
  private wrap(err: grpc.ServiceError, method: string): Error {
    const s = grpc.status
    const details = err.details || err.message
    let out: Error
    switch (err.code) {
      case s.UNAVAILABLE:
        out = /EACCES|permission denied/i.test(details) ? denied(this.address) : unreachable(this.address)
        break
      case s.DEADLINE_EXCEEDED:
        out = new CtrnetError(`containerd at ${this.address}`, `no answer to ${method} within ${this.timeoutMs / 1000}s`)
        break
      case s.PERMISSION_DENIED:
      case s.UNAUTHENTICATED:
        out = denied(this.address)
        break
      default:
        out = new CtrnetError(`containerd ${method}`, details)
    }
    ;(out as Error & {grpcCode?: number}).grpcCode = err.code
    return out
  }

  isNotFound(err: unknown): boolean {
    return (err as {grpcCode?: number})?.grpcCode === grpc.status.NOT_FOUND
  }

  // --- namespaces -----------------------------------------------------------

  async listNamespaces(): Promise<string[]> {
    const res = await this.unary<{namespaces: Array<{name: string}>}>(this.ns, 'List', {filter: ''})
    return res.namespaces.map((n) => n.name).sort()
  }

  // --- containers -----------------------------------------------------------

  /** The container, or undefined when it does not exist. */
  async getContainer(id: string, namespace?: string): Promise<ContainerInfo | undefined> {
    try {
      const res = await this.unary<{container: ContainerInfo}>(this.containers, 'Get', {id}, namespace)
      return res.container
    } catch (err) {
      if (this.isNotFound(err)) return undefined
      throw err
    }
  }

  /**
   * Containers matching the filters (containerd filter syntax, ORed), via
   * ListStream; containerd versions without it answer UNIMPLEMENTED and we
   * fall back to List.
   */
  async listContainers(filters: string[] = [], namespace?: string): Promise<ContainerInfo[]> {
    try {
      return await this.listStream(filters, namespace)
    } catch (err) {
      if ((err as {grpcCode?: number}).grpcCode !== grpc.status.UNIMPLEMENTED) throw err
    }
    const res = await this.unary<{containers: ContainerInfo[]}>(this.containers, 'List', {filters}, namespace)
    return res.containers
  }

  private listStream(filters: string[], namespace?: string): Promise<ContainerInfo[]> {
    const fn = (this.containers as unknown as Record<string, (r: unknown, md: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientReadableStream<{container: ContainerInfo}>>)
      .ListStream!.bind(this.containers)
    return new Promise((resolve, reject) => {
      const out: ContainerInfo[] = []
      const stream = fn({filters}, this.md(namespace), this.callOpts())
      stream.on('data', (m: {container?: ContainerInfo}) => {
        if (m.container) out.push(m.container)
      })
      stream.on('error', (err: grpc.ServiceError) => reject(this.wrap(err, 'ListStream')))
      stream.on('end', () => resolve(out))
    })
  }

  /**
   * Sets (value given) or removes (undefined) one label, touching nothing
   * else: Update with the field mask `labels.<key>`. containerd drops a label
   * whose value is empty.
   */
  async setLabel(id: string, key: string, value: string | undefined, namespace?: string): Promise<ContainerInfo> {
    const res = await this.unary<{container: ContainerInfo}>(
      this.containers,
      'Update',
      {container: {id, labels: value === undefined ? {} : {[key]: value}}, updateMask: {paths: [`labels.${key}`]}},
      namespace,
    )
    return res.container
  }

  // --- tasks ----------------------------------------------------------------

  /** The container's task (its init process), or undefined when it has none. */
  async getTask(containerId: string, namespace?: string): Promise<TaskInfo | undefined> {
    try {
      const res = await this.unary<{process: RawTask}>(this.tasks, 'Get', {containerId, execId: ''}, namespace)
      return taskInfo(res.process)
    } catch (err) {
      if (this.isNotFound(err)) return undefined
      throw err
    }
  }

  async listTasks(namespace?: string): Promise<TaskInfo[]> {
    const res = await this.unary<{tasks: RawTask[]}>(this.tasks, 'List', {filter: ''}, namespace)
    return res.tasks.map(taskInfo)
  }
  // --- events ---------------------------------------------------------------

  /**
   * containerd's events of every namespace that match any of the filters
   * (containerd filter syntax, e.g. `topic~="/tasks/"`, `namespace==ns`;
   * none: every event), from now on: containerd replays nothing.
   * The subscription starts at the first next() and has no deadline. The
   * iterator ends when the signal aborts; it throws a CtrnetError when
   * containerd cannot be reached, goes away, or ends the stream, and when
   * close() is called. Breaking out of the loop cancels the call.
   */
  subscribe(filters: string[] = [], signal?: AbortSignal): AsyncIterable<ContainerdEvent> {
    eventsService ??= loadEventsService(protosDir())
    this.events ??= new eventsService(`unix://${socketPath(this.address)}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_RECV_BYTES,
      'grpc.max_send_message_length': MAX_RECV_BYTES,
      channelOverride: this.ns.getChannel(),
    })
    const track = (cancel: () => void) => {
      this.subscriptions.add(cancel)
      return () => this.subscriptions.delete(cancel)
    }
    const broken = (err: grpc.ServiceError | undefined, established: boolean) =>
      err && !established ? this.wrap(err, 'Subscribe') : streamError(this.address, err)
    return eventStream(this.events, filters, signal, broken, track)
  }
}

/** Connects, runs fn, and always closes the channel. */
export async function withClient<T>(opts: ClientOptions, fn: (c: ContainerdClient) => Promise<T>): Promise<T> {
  const c = await ContainerdClient.connect(opts)
  try {
    return await fn(c)
  } finally {
    c.close()
  }
}
