#!/usr/bin/env node
'use strict';
// Builds the native addon from source with cargo (the workspace's crate `flagstaff-node`) and
// copies the library to flagstaff.<platform>-<arch>.node next to index.js. Run by `npm install`.
//
// FLAGSTAFF_NODE_PROFILE=debug|release (default release; the tests use debug, which builds in a
// fraction of the time). FLAGSTAFF_NODE_SKIP_BUILD=1 skips it (a prebuilt package is used).
// CARGO names the cargo to run.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

if (process.env.FLAGSTAFF_NODE_SKIP_BUILD === '1') process.exit(0);

const root = path.resolve(__dirname, '..');
const manifest = path.join(root, 'native', 'Cargo.toml');
const profile = process.env.FLAGSTAFF_NODE_PROFILE === 'debug' ? 'debug' : 'release';
const cargo = process.env.CARGO || 'cargo';

const metadata = JSON.parse(
  execFileSync(cargo, ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  }),
);
// FLAGSTAFF_NODE_WORKSPACE_BUILD=1 builds every library of the workspace (as the repository's
// test script does): cargo then resolves features as for the workspace's other builds and
// reuses them, where the addon alone would build its dependencies once more.
const scope = process.env.FLAGSTAFF_NODE_WORKSPACE_BUILD === '1' ? ['--workspace'] : ['-p', 'flagstaff-node'];
const args = ['build', '--manifest-path', manifest, ...scope, '--lib'];
if (profile === 'release') args.push('--release');
if (fs.existsSync(path.join(metadata.workspace_root, 'Cargo.lock'))) args.push('--locked');
// FLAGSTAFF_NODE_COPY_ONLY=1: the caller built the library already (bench/node-sdk.sh builds it
// with the server in one cargo run); only copy it.
if (process.env.FLAGSTAFF_NODE_COPY_ONLY !== '1') {
  console.error(`@flagstaff/node: cargo ${args.join(' ')}`);
  execFileSync(cargo, args, { stdio: 'inherit' });
}

const names = { linux: 'libflagstaff_node.so', darwin: 'libflagstaff_node.dylib', win32: 'flagstaff_node.dll' };
const built = path.join(metadata.target_directory, profile, names[process.platform] || names.linux);
const target = path.join(root, `flagstaff.${process.platform}-${process.arch}.node`);
// Copy beside, then rename: a running process keeps the old file it mapped.
const tmp = `${target}.${process.pid}.tmp`;
fs.copyFileSync(built, tmp);
fs.renameSync(tmp, target);
console.error(`@flagstaff/node: built ${path.relative(process.cwd(), target)} (${profile})`);
