/**
 * node:http and node:https as the etcd client uses them. Loading them costs a
 * process about 5 ms (measured at a `cni add`: http ~4 ms, https ~1 ms more),
 * and every command that runs a chain loads the overlay plugin, though few
 * talk to etcd: so no module imports this one statically. The command
 * boundary (src/commands/, the one place that loads lazily) hands
 * sys/etcd-port.ts a loader of it, and a client calls that loader at its
 * first request.
 */
import * as http from 'node:http'
import * as https from 'node:https'

export {http, https}
