#!/usr/bin/env node
// The `herald` command; subcommands arrive with the server issue.
console.error('herald: the CLI is not built yet')
process.exit(1)
