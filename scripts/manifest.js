// Bundles the CLI (scripts/build.js), then generates oclif.manifest.json from
// the bundled commands, so that the CLI does not load every command's
// metadata at start-up. Equivalent to `oclif manifest` without pulling the
// whole oclif dev toolchain into the dependency tree.
import './build.js'
import {Plugin} from '@oclif/core'
import {writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const plugin = new Plugin({root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true, isRoot: true})
await plugin.load()
const manifest = plugin.manifest
if (!manifest || Object.keys(manifest.commands).length === 0) {
  console.error('manifest: no commands found')
  process.exit(1)
}
writeFileSync(join(root, 'oclif.manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
console.log(`manifest: ${Object.keys(manifest.commands).length} commands`)
