#!/usr/bin/env node
// ctrnet CLI entry. `npm run build` bundles the commands and oclif into one
// CommonJS file, dist/bundle/cli.cjs, with V8's code cache beside it. Loading
// it here through vm.Script with that cache skips most of the parsing and
// compiling a start would otherwise spend; the module is registered in the
// require cache so that oclif's own import of it finds this instance.
import {readFileSync, writeFileSync} from 'node:fs'
import Module, {createRequire} from 'node:module'
import {basename, dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import vm from 'node:vm'

// Multi-call: run under the name ctrnet-overlay (the link `ctrnet cni plugin
// --install` puts in /opt/cni/bin), this is the exec'd CNI plugin of that
// type, exactly `ctrnet cni plugin`. argv[1] keeps the name it was run by:
// Node resolves links only for the module's own URL (import.meta.url below).
if (process.argv[1] && basename(process.argv[1]) === 'ctrnet-overlay') process.argv.splice(2, Infinity, 'cni', 'plugin')

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'bundle', 'cli.cjs')
const cacheFile = `${file}.cache`
let cachedData
try {
  cachedData = readFileSync(cacheFile)
} catch {
  // no cache: compile normally
}
const script = new vm.Script(Module.wrap(readFileSync(file, 'utf8')), {filename: file, cachedData})
const mod = new Module(file)
mod.filename = file
mod.paths = Module._nodeModulePaths(dirname(file))
Module._cache[file] = mod
script.runInThisContext().call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file))
mod.loaded = true
if (process.env.CTRNET_WRITE_CODE_CACHE) process.once('exit', () => writeFileSync(cacheFile, script.createCachedData()))
await mod.exports.main()
