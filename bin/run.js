#!/usr/bin/env node
// ctrnet CLI entry. `npm run build` bundles the commands and oclif into
// dist/bundle/cli.js and writes oclif.manifest.json, so start-up loads one
// file and imports nothing a command does not use.
const {main} = await import('../dist/bundle/cli.js')
await main()
