// FlagstaffProvider through the real @openfeature/server-sdk against the real server:
// resolution details (variant, reason, error codes, flag metadata) and provider events —
// READY, CONFIGURATION_CHANGED with the changed flag keys, STALE when the server is lost and
// READY again when it is back.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { OpenFeature, ProviderEvents, ProviderStatus } from '@openfeature/server-sdk';

import { FlagstaffProvider } from '../index.mjs';
import { Server, shopDocument, until } from './helpers.mjs';

const pick = (d) => ({
  value: d.value,
  variant: d.variant ?? null,
  reason: d.reason ?? null,
  errorCode: d.errorCode ?? null,
  flagMetadata: d.flagMetadata ?? {},
});

test('the OpenFeature provider resolves locally and tells the SDK what happens to the server', async (t) => {
  const server = await Server.start({ document: shopDocument() });
  t.after(() => server.stop());
  const events = [];
  for (const type of [ProviderEvents.Ready, ProviderEvents.ConfigurationChanged, ProviderEvents.Stale, ProviderEvents.Error]) {
    OpenFeature.addHandler(type, (details) => events.push({ type, flagsChanged: details?.flagsChanged }));
  }
  const provider = new FlagstaffProvider({
    url: server.url,
    key: server.key,
    pollIntervalMs: 3600000,
    reconnectInitialMs: 50,
    reconnectMaxMs: 200,
    sendEvents: false,
  });
  await OpenFeature.setProviderAndWait(provider);
  t.after(() => OpenFeature.close());
  await until('READY', () => events.some((e) => e.type === ProviderEvents.Ready));
  const client = OpenFeature.getClient();

  const staff = { targetingKey: 'u-9', email: 'ada@acme.com' };
  assert.deepEqual(pick(await client.getBooleanDetails('new-checkout', false, staff)), {
    value: true, variant: 'on', reason: 'TARGETING_MATCH', errorCode: null, flagMetadata: { version: 1, ruleId: 'staff' },
  });
  assert.deepEqual(pick(await client.getBooleanDetails('new-checkout', true, { targetingKey: 'u-1' })), {
    value: false, variant: 'off', reason: 'DEFAULT', errorCode: null, flagMetadata: { version: 1 },
  });
  assert.deepEqual(pick(await client.getStringDetails('banner', 'd', {})), {
    value: 'Hello, "world" <script>\t1</script> ✓', variant: 'a', reason: 'STATIC', errorCode: null, flagMetadata: { version: 1 },
  });
  assert.equal((await client.getNumberDetails('price', 0, {})).value, 9.5);
  assert.deepEqual((await client.getObjectDetails('theme', {}, {})).value, { bg: '#000', sizes: [1, 2] });
  const split = await client.getStringDetails('split', 'none', { targetingKey: 'u-1' });
  assert.equal(split.reason, 'SPLIT');
  assert.match(split.variant, /^[xy]$/);
  // Errors: the default, reason ERROR and OpenFeature's code.
  const missing = pick(await client.getBooleanDetails('no-such-flag', true, {}));
  assert.deepEqual([missing.value, missing.reason, missing.errorCode], [true, 'ERROR', 'FLAG_NOT_FOUND']);
  const wrongType = pick(await client.getStringDetails('new-checkout', 'text', staff));
  assert.deepEqual([wrongType.value, wrongType.reason, wrongType.errorCode], ['text', 'ERROR', 'TYPE_MISMATCH']);
  const noKey = pick(await client.getStringDetails('split', 'none', {}));
  assert.deepEqual([noKey.value, noKey.reason, noKey.errorCode], ['none', 'ERROR', 'TARGETING_KEY_MISSING']);

  // A change: CONFIGURATION_CHANGED naming the flag.
  await until('the stream', () => provider.client.status().streamConnected);
  events.length = 0;
  await server.toggle('new-checkout', false);
  await until('CONFIGURATION_CHANGED', () => events.some((e) => e.type === ProviderEvents.ConfigurationChanged));
  assert.deepEqual(events.find((e) => e.type === ProviderEvents.ConfigurationChanged).flagsChanged, ['new-checkout']);
  assert.equal((await client.getBooleanDetails('new-checkout', true, staff)).reason, 'DISABLED');

  // The server goes away: STALE, values still served; it comes back: READY.
  events.length = 0;
  await server.kill();
  await until('STALE', () => events.some((e) => e.type === ProviderEvents.Stale));
  assert.equal(client.providerStatus, ProviderStatus.STALE);
  assert.equal(await client.getBooleanValue('new-checkout', true, staff), false);
  await server.restart();
  await until('READY again', () => events.some((e) => e.type === ProviderEvents.Ready));
  assert.equal(client.providerStatus, ProviderStatus.READY);
  await server.toggle('new-checkout', true);
  await until('the change after the restart', async () => (await client.getBooleanValue('new-checkout', false, staff)) === true);
});
