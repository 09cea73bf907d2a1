import type * as http from 'node:http'
import type * as https from 'node:https'

/** node:http and node:https, as the etcd client uses them (sys/etcd-http.ts). */
export interface HttpModules {
  http: typeof http
  https: typeof https
}

export type HttpLoader = () => Promise<HttpModules>

let loader: HttpLoader | undefined

/**
 * How etcd clients get node:http and node:https: the command boundary (the
 * base command, src/cli/base-command.ts, for every command) hands in
 * `() => import('../sys/etcd-http.js')`, and a client calls it at its first
 * request, so a command that never reaches etcd never loads them. A program that uses sys/etcd.ts
 * outside the CLI hands in the same (or imports sys/etcd-http.js and hands in
 * its modules).
 */
export function handEtcdHttp(load: HttpLoader): void {
  loader = load
}

/** The loader handed in; undefined when none was. */
export function etcdHttpLoader(): HttpLoader | undefined {
  return loader
}
