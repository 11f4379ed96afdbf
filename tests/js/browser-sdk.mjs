// flagstaff.js, loaded from the Flagstaff server by a page on another origin, in headless
// Chromium. Usage: node browser-sdk.mjs <server url> <client key>
//
// Steps: "ready" (values through the cacheable GET); the test toggles `beta-ui` on and
// answers; "changed" (the live update); "identified" (identify() to another context and
// back); "fallback" (with GET /client/v1 failing, values come
// from the OFREP POST); "slow-belt" (with GET /client/v1 never answering, the POST answers within
// the timeout); "polling" (with the stream refused, the SDK polls: the test turns max-items off
// and answers; "polled" once the page has the new value); "stop-server" — the test stops Flagstaff and answers; "cached" (a
// reload shows the last values from localStorage); "down-defaults" (a context never seen:
// defaults); "timeout" (a server that never answers: defaults once the timeout passed).

import net from 'node:net';
import { fail, launchChromium, reply, staticServer, step, until, watchPage } from './lib.mjs';

const [url, key] = process.argv.slice(2);

const page_html = '<!doctype html><meta charset="utf-8"><title>flagstaff.js</title><p>flagstaff.js test page</p>';

// Runs in the page: loads the SDK from the server (a cross-origin module) and starts it.
async function start(moduleUrl, url, key, context, timeout) {
  const flags = await import(moduleUrl);
  window.flags = flags;
  window.changes = [];
  const begun = performance.now();
  const ok = await flags.init({ url, key, context, timeout });
  const elapsed = performance.now() - begun;
  flags.on('change', (keys) => window.changes.push(keys));
  return { ok, elapsed, ...snapshot() };
  function snapshot() {
    return {
      newCheckout: flags.isEnabled('new-checkout'),
      betaUi: flags.isEnabled('beta-ui'),
      theme: flags.get('theme') ?? null,
      maxItems: flags.get('max-items') ?? null,
      unknownEnabled: flags.isEnabled('no-such-flag'),
      unknownIsUndefined: flags.get('no-such-flag') === undefined,
      internalIsUndefined: flags.get('internal-tool') === undefined,
      all: flags.all(),
    };
  }
}

let chromium;
try {
  // The page loads the SDK from Flagstaff (a cross-origin module). For the offline part it uses
  // the same bytes from its own origin, as a site that keeps a copy would, with the browser's
  // HTTP cache off so that nothing but localStorage can answer.
  const sdk = await (await fetch(url + '/sdk/flagstaff.js')).text();
  const { server, origin } = await staticServer({
    '/': ['text/html; charset=utf-8', page_html],
    '/flagstaff.js': ['text/javascript; charset=utf-8', sdk],
  });
  const fromServer = url + '/sdk/flagstaff.js';
  const fromPage = origin + '/flagstaff.js';
  chromium = await launchChromium();
  const requests = [];
  const open = async (label, intercept) => {
    const page = await chromium.browser.newPage();
    watchPage(page, label);
    if (intercept) {
      await page.setRequestInterception(true);
      // 'hang': the request is never answered.
      page.on('request', (r) => {
        const what = intercept(r);
        if (what !== 'hang') what ? r.abort() : r.continue();
      });
    }
    page.on('response', (r) => {
      const u = r.url();
      if (u.includes('/client/v1/') || u.includes('/ofrep/v1/evaluate')) {
        requests.push({ page: label, method: r.request().method(), status: r.status(), get: u.includes('/client/v1/') });
      }
    });
    await page.goto(origin + '/');
    return page;
  };

  // 1. Values through the belt (the GET), then a live update over SSE.
  const page = await open('main');
  const ready = await page.evaluate(start, fromServer, url, key, { targetingKey: 'u-target-1' }, 10000);
  step('ready', { ...ready, requests: [...requests], pageOrigin: origin });
  await reply(); // the test turned beta-ui on
  await until('the change event', () => page.evaluate(() => window.flags.isEnabled('beta-ui')));
  step('changed', { changes: await page.evaluate(() => window.changes), betaUi: true, requests: [...requests] });

  // identify(): another context, other values (and a change event), then back.
  const identified = await page.evaluate(async () => {
    const before = window.changes.length;
    const ok = await window.flags.identify({ targetingKey: 'u-2' });
    const other = { ok, newCheckout: window.flags.isEnabled('new-checkout'), changes: window.changes.slice(before) };
    await window.flags.identify({ targetingKey: 'u-target-1' });
    return { other, back: window.flags.isEnabled('new-checkout') };
  });
  step('identified', identified);

  // 2. The suspenders: with the GET failing, the OFREP POST answers.
  const fallbackPage = await open('fallback', (r) => r.url().includes('/client/v1/'));
  const fallback = await fallbackPage.evaluate(start, fromServer, url, key, { targetingKey: 'u-2' }, 10000);
  step('fallback', { ...fallback, requests: requests.filter((r) => r.page === 'fallback') });
  await fallbackPage.close();

  // A belt that hangs: its own short budget passes and the suspenders answer, well before the
  // overall timeout (without that budget this init would end in defaults).
  const slowPage = await open('slow-belt', (r) => (r.url().includes('/client/v1/') ? 'hang' : false));
  const slow = await slowPage.evaluate(
    async (moduleUrl, url, key) => {
      const flags = await import(moduleUrl);
      const ok = await flags.init({ url, key, context: { targetingKey: 'u-2' }, timeout: 10000, beltTimeout: 300 });
      return { ok, newCheckout: flags.isEnabled('new-checkout'), betaUi: flags.isEnabled('beta-ui') };
    },
    fromServer,
    url,
    key,
  );
  step('slow-belt', { ...slow, requests: requests.filter((r) => r.page === 'slow-belt') });
  await slowPage.close();

  // A stream that cannot be held (refused every time): the SDK polls instead.
  const pollPage = await open('polling', (r) => r.url().includes('/ofrep/v1/stream'));
  const before = await pollPage.evaluate(
    async (moduleUrl, url, key) => {
      window.flags = await import(moduleUrl);
      await window.flags.init({ url, key, context: { targetingKey: 'u-poll' }, pollInterval: 300 });
      return window.flags.get('max-items');
    },
    fromServer,
    url,
    key,
  );
  step('polling', { maxItems: before });
  await reply(); // the test turned max-items off
  await until('a poll to bring the change', () =>
    pollPage.evaluate((before) => window.flags.get('max-items') !== before, before),
  );
  step('polled', { maxItems: await pollPage.evaluate(() => window.flags.get('max-items')) });
  await pollPage.close();

  // 3. Flagstaff goes down: a reload starts from the values kept in localStorage.
  step('stop-server');
  await reply();
  await page.setCacheEnabled(false);
  await page.reload();
  const cached = await page.evaluate(start, fromPage, url, key, { targetingKey: 'u-target-1' }, 5000);
  step('cached', cached);

  // 4. A context never seen while the server is down: defaults.
  const down = await page.evaluate(start, fromPage, url, key, { targetingKey: 'never-seen' }, 5000);
  step('down-defaults', down);

  // 5. A server that accepts connections and never answers: defaults after the timeout.
  const sockets = new Set();
  const blackHole = net.createServer((s) => sockets.add(s));
  await new Promise((r) => blackHole.listen(0, '127.0.0.1', r));
  const silent = `http://127.0.0.1:${blackHole.address().port}`;
  const timedOut = await page.evaluate(
    async (silent, key) => {
      const begun = performance.now();
      const ok = await window.flags.init({ url: silent, key, context: { targetingKey: 'u-target-1' }, timeout: 700 });
      return {
        ok,
        elapsed: performance.now() - begun,
        newCheckout: window.flags.isEnabled('new-checkout'),
        theme: window.flags.get('theme') ?? null,
        all: window.flags.all(),
      };
    },
    silent,
    key,
  );
  step('timeout', timedOut);
  for (const s of sockets) s.destroy();
  blackHole.close();

  await chromium.close();
  server.close();
  process.exit(0);
} catch (e) {
  if (chromium) await chromium.close();
  fail(e);
}
