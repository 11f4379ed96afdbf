'use strict';
// Loads the native addon: the one built from source in this directory by `npm install`
// (scripts/build-native.js), else a prebuilt per-platform package when one is installed
// (README.md, "Prebuilt binaries").

const path = require('node:path');

const triple = `${process.platform}-${process.arch}`;
const candidates = [path.join(__dirname, `flagstaff.${triple}.node`), `@flagstaff/node-${triple}`];
const errors = [];
let addon = null;
for (const candidate of candidates) {
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
