// Bundles the CLI for start-up speed into one CommonJS file,
// dist/bundle/cli.cjs: every command, @oclif/core and the dependencies
// (grpc stays an external module, loaded only by the containerd commands).
// Code that only some commands use (ajv, the runtime and its plugins) is
// bundled too but evaluated only when first imported. oclif finds the
// commands through the "explicit" strategy: the COMMANDS export.
//
// Then it records V8's code cache for the bundle (dist/bundle/cli.cjs.cache)
// by running `network ls` once: bin/run.js hands the cache to V8, which then
// skips most parsing and compiling at every start. A cache made by another
// Node/V8 version is rejected by V8 and the bundle simply compiles.
import {build} from 'esbuild'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src')
const out = join(root, 'dist', 'bundle')

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') && !p.endsWith('.d.ts') ? [p] : []
  })
}

const files = walk(join(src, 'commands')).sort()
const imports = files.map((f, i) => `import C${i} from './${relative(src, f).replace(/\\/g, '/')}'`)
const ids = files.map((f, i) => {
  const id = relative(join(src, 'commands'), f).replace(/\.ts$/, '').split('/').filter((p) => p !== 'index').join(':')
  return `  ${JSON.stringify(id)}: C${i},`
})
const entry = `${imports.join('\n')}
import {execute, settings} from '@oclif/core'
export const COMMANDS = {
${ids.join('\n')}
}
export async function main() {
  // Always run the bundle: never look for TypeScript sources or load a
  // transpiler at run time (oclif would in a checkout with NODE_ENV=test).
  settings.enableAutoTranspile = false
  await execute({dir: __filename})
}
`

rmSync(out, {recursive: true, force: true})
const result = await build({
  metafile: true,
  stdin: {contents: entry, resolveDir: src, sourcefile: 'cli.ts', loader: 'ts'},
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // import() of external modules (grpc, node: builtins) becomes require(): the
  // bundle runs inside vm.Script, which has no dynamic-import hook on Node 20
  supported: {'dynamic-import': false},
  outfile: join(out, 'cli.cjs'),
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  external: ['typescript', 'ts-node', 'tsx', '@grpc/grpc-js', '@grpc/proto-loader'],
  // modules that locate files next to themselves (protos/) see the bundle's own URL
  define: {'import.meta.url': '__ctrnetBundleUrl'},
  banner: {js: "var __ctrnetBundleUrl = require('node:url').pathToFileURL(__filename).href;"},
})
writeFileSync(join(root, 'dist', 'bundle-meta.json'), JSON.stringify(result.metafile))
console.log(`bundle: ${files.length} commands -> dist/bundle/cli.cjs`)

// Record the code cache with a representative run (nothing is written but the cache).
const scratch = mkdtempSync(join(tmpdir(), 'ctrnet-build-'))
try {
  execFileSync(process.execPath, [join(root, 'bin', 'run.js'), 'network', 'ls', '--cni-netconfpath', scratch], {
    env: {...process.env, CTRNET_WRITE_CODE_CACHE: '1'},
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  console.log('bundle: code cache -> dist/bundle/cli.cjs.cache')
} finally {
  rmSync(scratch, {recursive: true, force: true})
}
