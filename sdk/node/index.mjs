// ESM entry of @flagstaff/node: the same objects as the CommonJS entry (index.js).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const sdk = require('./index.js');

export const Flagstaff = sdk.Flagstaff;
export const keyFingerprint = sdk.keyFingerprint;

let provider;
try {
  provider = require('./provider.js').FlagstaffProvider;
} catch (e) {
  // @openfeature/server-sdk (an optional peer dependency) is not installed.
  provider = class FlagstaffProvider {
    constructor() {
      throw new Error(`FlagstaffProvider needs @openfeature/server-sdk: ${e.message}`);
    }
  };
}
export const FlagstaffProvider = provider;
export default sdk;
