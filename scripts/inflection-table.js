#!/usr/bin/env node
// Regenerates crates/oxbow-core/src/inflection.json from the `inflection` package LoopBack 3
// uses (install the reference rig first: scripts/record-transcripts.sh does it).
// Usage: node scripts/inflection-table.js [path/to/node_modules/inflection]
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const dir = process.argv[2] || path.join(__dirname, '../target/lb3rig/node_modules/inflection');
const src = fs.readFileSync(path.join(dir, 'lib/inflection.js'), 'utf8');
const code = src.replace(/return inflector;\s*\}\)\);?\s*$/m, 'return {plural_rules, uncountable_words};}));');
const mod = { exports: {} };
vm.runInNewContext(code, { module: mod, exports: mod.exports, define: undefined, require });
const { version } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const out = {
  source: `npm inflection ${version} (MIT), the plural rules and uncountable words LoopBack 3 uses; regenerate with scripts/inflection-table.js`,
  uncountable: mod.exports.uncountable_words,
  plural: mod.exports.plural_rules.map(r => [r[0].source, r[1] === undefined ? null : r[1]]),
};
fs.writeFileSync(path.join(__dirname, '../crates/oxbow-core/src/inflection.json'), JSON.stringify(out, null, 1) + '\n');
