// @openfeature/server-sdk + @openfeature/ofrep-provider (single-flag evaluation) in Node,
// against a Flagstaff server. Usage: node node-ofrep.mjs <server url> <key>
// Prints `{"step": "results", "results": {name: details}}`; the Rust test checks them.

import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { fail, step } from './lib.mjs';

const [url, key] = process.argv.slice(2);

const pick = (d) => ({
  value: d.value,
  variant: d.variant ?? null,
  reason: d.reason ?? null,
  errorCode: d.errorCode ?? null,
  flagMetadata: d.flagMetadata ?? {},
});

try {
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({ baseUrl: url, headers: [['Authorization', `Bearer ${key}`]] }),
  );
  const client = OpenFeature.getClient();
  const staff = { targetingKey: 'u-9', email: 'jo@acme-internal.example' };
  const results = {
    staff: pick(await client.getBooleanDetails('new-checkout', false, staff)),
    noTargetingKey: pick(await client.getBooleanDetails('new-checkout', true, {})),
    split: pick(await client.getStringDetails('checkout-split', 'none', { targetingKey: 'u-2' })),
    splitNoTargetingKey: pick(await client.getStringDetails('checkout-split', 'none', {})),
    price: pick(await client.getNumberDetails('price', 0, {})),
    maxItems: pick(await client.getNumberDetails('max-items', 0, {})),
    theme: pick(await client.getObjectDetails('theme', {}, {})),
    internal: pick(await client.getBooleanDetails('internal-tool', false, { targetingKey: 'u-1' })),
    gated: pick(await client.getBooleanDetails('gated', true, { targetingKey: 'u-1' })),
    missing: pick(await client.getBooleanDetails('no-such-flag', true, {})),
    wrongType: pick(await client.getStringDetails('new-checkout', 'text', {})),
  };
  step('results', { results });
  await OpenFeature.close();
  process.exit(0);
} catch (e) {
  fail(e);
}
