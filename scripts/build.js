// Bundles the CLI for start-up speed: every command, @oclif/core and the
// light dependencies go into dist/bundle/cli.js (loaded once, no module
// resolution walk); what a command needs only sometimes (ajv, the runtime's
// plugins) is split into chunks loaded on demand, and grpc stays an external
// module loaded only by the containerd commands. oclif finds the commands
// through the "explicit" strategy: the COMMANDS export of the bundle.
import {build} from 'esbuild'
import {readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src')

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
  await execute({dir: import.meta.url})
}
`

rmSync(join(root, 'dist', 'bundle'), {recursive: true, force: true})
const result = await build({
  metafile: true,
  stdin: {contents: entry, resolveDir: src, sourcefile: 'cli.ts', loader: 'ts'},
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: join(root, 'dist', 'bundle'),
  entryNames: 'cli',
  chunkNames: 'chunk-[hash]',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
  external: ['typescript', 'ts-node', 'tsx', '@grpc/grpc-js', '@grpc/proto-loader'],
  banner: {js: "import {createRequire as __ctrnetCreateRequire} from 'node:module'; const require = __ctrnetCreateRequire(import.meta.url);"},
})
writeFileSync(join(root, 'dist', 'bundle-meta.json'), JSON.stringify(result.metafile))
console.log(`bundle: ${files.length} commands -> dist/bundle/cli.js`)
