#!/usr/bin/env node
// The bin of @vmm/image (packages/image/dist/cli.js): `node packages/image/dist/cli.js build`.
import { runImageCommand } from './cli-main.js'

process.exitCode = await runImageCommand(process.argv.slice(2))
