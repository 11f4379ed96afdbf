'use strict';
// Loads the native addon: the one built from source in this directory by `npm install`
// (scripts/build-native.js), else a prebuilt per-platform package when one is installed
// (README.md, "Prebuilt binaries").

const path = require('node:path');

const triple = `${process.platform}-${process.arch}`;
/** napi-rs's package suffix: the C library on Linux, the toolchain on Windows. */
function abi() {
  if (process.platform === 'win32') return '-msvc';
  if (process.platform !== 'linux') return '';
  const header = process.report && process.report.getReport().header;
  return header && header.glibcVersionRuntime ? '-gnu' : '-musl';
}
// The package name is worked out only when no local build is there (a report takes a moment).
const candidates = [() => path.join(__dirname, `flagstaff.${triple}.node`), () => `@flagstaff/node-${triple}${abi()}`];
const errors = [];
let addon = null;
for (const name of candidates) {
  const candidate = name();
  try {
    addon = require(candidate);
    break;
  } catch (e) {
    errors.push(`${candidate}: ${e.message.split('\n')[0]}`);
  }
}
if (!addon) {
  throw new Error(
    `@flagstaff/node: no native addon for ${triple}. Build it from source with \`npm run build-native\` ` +
      `in ${__dirname} (needs cargo), or install a prebuilt package. Tried: ${errors.join('; ')}`,
  );
}
module.exports = addon;
