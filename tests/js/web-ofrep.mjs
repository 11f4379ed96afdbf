// @openfeature/web-sdk + @openfeature/ofrep-web-provider in headless Chromium, on a page served
// from another origin than Flagstaff (so CORS is exercised for real). The two packages are
// bundled with esbuild for the page at run time.
// Usage: node web-ofrep.mjs <server url> <client key>
//
// Steps: "ready" (first values, after the SSE connection's first refetch answered 304);
// the test toggles `beta-ui` on and answers; "changed" (the live update arrived); the test
// toggles a flag the client key cannot see and answers; "unchanged" (the refetch got 304).

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { fail, launchChromium, reply, staticServer, step, until, watchPage } from './lib.mjs';

const [url, key] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));

const entry = `
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
window.start = async (baseUrl, key, context) => {
  window.changes = [];
  // cacheMode 'disabled': this run tests the network, not the provider's own cache.
  const provider = new OFREPWebProvider({ baseUrl, headers: [['Authorization', 'Bearer ' + key]], cacheMode: 'disabled' });
  await OpenFeature.setContext(context);
  await OpenFeature.setProviderAndWait(provider);
  const client = OpenFeature.getClient();
  client.addHandler(ProviderEvents.ConfigurationChanged, (e) => window.changes.push(e.flagsChanged || []));
  const pick = (d) => ({ value: d.value, variant: d.variant ?? null, reason: d.reason, errorCode: d.errorCode ?? null, flagMetadata: d.flagMetadata });
  window.values = () => ({
    newCheckout: pick(client.getBooleanDetails('new-checkout', true)),
    betaUi: pick(client.getBooleanDetails('beta-ui', false)),
    theme: pick(client.getObjectDetails('theme', {})),
    price: pick(client.getNumberDetails('price', 0)),
    split: pick(client.getStringDetails('checkout-split', 'none')),
    gated: pick(client.getBooleanDetails('gated', true)),
    internal: pick(client.getBooleanDetails('internal-tool', true)),
  });
  return window.values();
};
`;

let chromium;
try {
  const bundle = await esbuild.build({
    stdin: { contents: entry, resolveDir: here, loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  });
  const page_html = '<!doctype html><meta charset="utf-8"><title>OFREP web provider</title><script type="module" src="/app.js"></script>';
  const { server, origin } = await staticServer({
    '/': ['text/html; charset=utf-8', page_html],
    '/app.js': ['text/javascript; charset=utf-8', bundle.outputFiles[0].text],
  });

  chromium = await launchChromium();
  const page = await chromium.browser.newPage();
  watchPage(page, 'web-ofrep');
  const bulk = []; // statuses of the bulk evaluations the provider made
  page.on('response', (r) => {
    if (r.request().method() === 'POST' && r.url().startsWith(url + '/ofrep/v1/evaluate/flags')) bulk.push(r.status());
  });
  await page.goto(origin + '/');
  await page.waitForFunction(() => typeof window.start === 'function');

  const first = await page.evaluate((u, k) => window.start(u, k, { targetingKey: 'u-2' }), url, key);
  // The stream's first event makes the provider refetch with If-None-Match: 304.
  await until('a 304 on the refetch after the stream opened', () => bulk.includes(304));
  step('ready', { values: first, bulk: [...bulk], pageOrigin: origin });

  await reply(); // the test turned beta-ui on
  await until('the live update', () => page.evaluate(() => window.values().betaUi.value === true));
  const changed = await page.evaluate(() => ({ values: window.values(), changes: window.changes }));
  step('changed', { ...changed, bulk: [...bulk] });

  const seen = bulk.length;
  await reply(); // the test changed a flag this key cannot see
  await until('the refetch after the second change', () => bulk.length > seen);
  step('unchanged', { values: await page.evaluate(() => window.values()), bulk: [...bulk] });

  await chromium.close();
  server.close();
  process.exit(0);
} catch (e) {
  if (chromium) await chromium.close();
  fail(e);
}
