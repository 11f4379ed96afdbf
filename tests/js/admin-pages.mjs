// The admin pages in headless Chromium (Debian's chromium driven by puppeteer-core),
// against a real Flagstaff server started by tests/it/admin/browser.rs.
//
//   node admin-pages.mjs <url> <admin email> <viewer email> <locked email> <password> <screenshot dir>
//
// Signs in, creates a project and a flag (named like a script: it must show as text), toggles
// it in production with the confirmation and no page reload, adds a rule, creates a server key
// and reads /sdk/v1/bundle with it; checks CSRF refusals, a viewer's pages and a forged toggle,
// sign-in throttling, keyboard access; and saves screenshots at desktop and phone widths.
// Creates a webhook and sends it a test event (a receiver in this script).
// Prints one line per step; exits 1 with the reason on the first failure.

import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launchChromium } from './lib.mjs';

const [base, adminEmail, viewerEmail, lockedEmail, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: admin-pages.mjs <url> <admin> <viewer> <locked> <password> <screenshot dir>');
  process.exit(2);
}
fs.mkdirSync(shots, { recursive: true });

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844, isMobile: true, hasTouch: true };

const problems = [];
const dialogs = [];
let step = 'start';

function log(message) {
  process.stdout.write(`[${step}] ${message}\n`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** A page that records dialogs (accepting confirmations) and console errors (CSP reports too). */
async function open(context, viewport = DESKTOP) {
  const page = await context.newPage();
  await page.setViewport(viewport);
  page.on('dialog', async (d) => {
    dialogs.push({ type: d.type(), message: d.message(), step });
    await d.accept();
  });
  page.on('console', (m) => {
    // Refusals the steps provoke on purpose are logged by Chromium as failed loads.
    const expected = ['csrf', 'viewer', 'throttling'].includes(step) && m.text().startsWith('Failed to load resource');
    if (m.type() === 'error' && !expected) problems.push(`${step}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${step}: page error: ${e.message}`));
  return page;
}

async function go(page, url) {
  const response = await page.goto(base + url, { waitUntil: 'load' });
  return response;
}

/** Clicks something that submits a form and waits for the next page. */
async function submit(page, selector) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
  return response;
}

async function signIn(page, email, pass) {
  await go(page, '/sign-in');
  await page.type('#email', email);
  await page.type('#password', pass);
  return submit(page, 'form[action="/sign-in"] button[type=submit]');
}

async function text(page, selector) {
  return page.$eval(selector, (el) => el.textContent.trim());
}

async function screenshot(page, name) {
  for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewport(viewport);
    await page.reload({ waitUntil: 'load' });
    if (label === 'phone') {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${name}: the page is ${overflow}px wider than a phone screen`);
    }
    await page.screenshot({ path: path.join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewport(DESKTOP);
}

const chromium = await launchChromium();
const browser = chromium.browser;

let failed = null;
try {
  const admin = await browser.createBrowserContext();
  const page = await open(admin);

  step = 'sign-in';
  let response = await go(page, '/');
  check(page.url().startsWith(base + '/sign-in'), `/ should lead to the sign-in page, got ${page.url()}`);
  await page.screenshot({ path: path.join(shots, 'sign-in-desktop.png'), fullPage: true });
  response = await signIn(page, adminEmail, password);
  check(response.status() === 200 && page.url() === base + '/projects',
    `signed in at ${page.url()} (${response.status()}): ${await page.evaluate(() => document.body.innerText)}`);
  log('signed in');

  step = 'keyboard';
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim());
  check(first === 'Skip to content', `the first Tab should reach "Skip to content", reached ${JSON.stringify(first)}`);
  await page.keyboard.press('Enter');
  const hash = await page.evaluate(() => location.hash);
  check(hash === '#main', `Enter on the skip link should go to #main, got ${hash}`);
  log('the skip link is first in the focus order');

  step = 'create project';
  await page.type('#key', 'shop');
  await page.type('#name', 'Shop');
  response = await submit(page, 'form[action="/projects"] button[type=submit]');
  check(page.url().startsWith(base + '/projects/shop/flags'), `after creating the project: ${page.url()}`);
  log('project shop created');

  step = 'create flag';
  await page.click('details.card > summary');
  await page.type('#new-key', 'new-checkout');
  await page.type('#new-name', '<script>alert(1)</script>');
  response = await submit(page, 'form[action="/projects/shop/flags"] button[type=submit]');
  check(page.url().startsWith(base + '/projects/shop/flags/new-checkout'), `after creating the flag: ${page.url()}`);
  const title = await text(page, 'h1');
  check(title.includes('<script>alert(1)</script>'), `the flag's name should show as text, h1 is ${JSON.stringify(title)}`);
  log('flag created; its name shows as text');

  step = 'toggle production';
  await go(page, '/projects/shop/flags');
  const listName = await text(page, 'tr[data-flag="new-checkout"] .flag-name');
  check(listName === '<script>alert(1)</script>', `the list shows the name as text: ${JSON.stringify(listName)}`);
  await page.evaluate(() => { window.stillHere = true; });
  const toggle = 'tr[data-flag="new-checkout"] td[data-env="production"] button.toggle';
  check((await page.$eval(toggle, (b) => b.getAttribute('aria-checked'))) === 'false', 'production starts off');
  const before = dialogs.length;
  await page.click(toggle);
  await page.waitForFunction((s) => document.querySelector(s).getAttribute('aria-checked') === 'true', { timeout: 10000 }, toggle);
  const asked = dialogs.slice(before);
  check(asked.length === 1 && asked[0].type === 'confirm' && asked[0].message.includes('Production'),
    `one confirmation naming Production expected, got ${JSON.stringify(asked)}`);
  check(await page.evaluate(() => window.stillHere === true), 'the page reloaded; the toggle must not reload it');
  check((await text(page, toggle)) === 'On', 'the button shows On');
  // Development needs no confirmation.
  const dev = 'tr[data-flag="new-checkout"] td[data-env="development"] button.toggle';
  const beforeDev = dialogs.length;
  await page.click(dev);
  await page.waitForFunction((s) => document.querySelector(s).getAttribute('aria-checked') === 'true', { timeout: 10000 }, dev);
  check(dialogs.length === beforeDev, 'development toggled without a confirmation');
  await page.reload({ waitUntil: 'load' });
  check((await page.$eval(toggle, (b) => b.getAttribute('aria-checked'))) === 'true', 'the new state is stored');
  log('toggled on in production after the confirmation, without a reload');

  step = 'add rule';
  await go(page, '/projects/shop/flags/new-checkout?env=production');
  await page.click('button[data-add-row="tpl-rule"]');
  const rule = '#rules > .rule:last-child';
  await page.type(`${rule} input[name$=".clauses[0].attribute"]`, 'email');
  await page.select(`${rule} select[name$=".clauses[0].op"]`, 'ends_with');
  await page.type(`${rule} textarea[name$=".clauses[0].values"]`, '@acme.com');
  await page.select(`${rule} select[name$="].serve"]`, 'on');
  await page.select('select[name="fallthrough.serve"]', '*rollout');
  const rolloutVisible = await page.$eval('#rollout-fallthrough', (f) => !f.hidden);
  check(rolloutVisible, 'choosing a rollout shows the weights');
  await page.$eval('input[name="fallthrough.rollout.weight.on"]', (i) => { i.value = '30'; i.dispatchEvent(new Event('input', { bubbles: true })); });
  await page.$eval('input[name="fallthrough.rollout.weight.off"]', (i) => { i.value = '60'; i.dispatchEvent(new Event('input', { bubbles: true })); });
  const sum = await text(page, 'output[data-weight-sum="fallthrough"]');
  check(sum.includes('90') && sum.includes('must be 100'), `the live total should flag 90%: ${sum}`);
  await page.$eval('input[name="fallthrough.rollout.weight.off"]', (i) => { i.value = '70'; i.dispatchEvent(new Event('input', { bubbles: true })); });
  check((await text(page, 'output[data-weight-sum="fallthrough"]')) === 'Total: 100%', 'the total reads 100%');
  response = await submit(page, 'form[action$="/environments/production"] button[type=submit]');
  check(response.status() === 200 && (await text(page, '.notice')) === 'Saved.', `saving the rule: ${response.status()}`);
  check(dialogs.at(-1).message.includes('Production'), 'saving production asked first');
  log('rule and 30/70 rollout saved');

  // Issue 16: a change scheduled at a time in the browser's zone is stored in UTC and shown
  // back in local time; then cancelled. (The page's zone is India's: +05:30, no DST.)
  step = 'schedule';
  await page.emulateTimezone('Asia/Kolkata');
  await go(page, '/projects/shop/flags/new-checkout?env=production');
  await page.select('#s-change', 'off');
  await page.$eval('#s-at-local', (i) => { i.value = '2031-06-01T12:30'; });
  const beforeSchedule = dialogs.length;
  response = await submit(page, 'form.js-schedule button[type=submit]');
  check(response.status() === 200 && (await text(page, '.notice')) === 'Scheduled.', `scheduling: ${response.status()}`);
  check(dialogs.length === beforeSchedule + 1 && dialogs.at(-1).message.includes('Production'), 'scheduling in production asked first');
  const when = await page.$eval('#schedules time', (t) => [t.getAttribute('datetime'), t.textContent]);
  check(when[0] === '2031-06-01T07:00:00.000Z', `12:30 in Kolkata is stored as 07:00 UTC, got ${when[0]}`);
  check(when[1].includes('12:30') && !when[1].includes('UTC'), `shown in the browser's time: ${JSON.stringify(when[1])}`);
  response = await submit(page, '#schedules form[action$="/cancel"] button[type=submit]');
  check((await text(page, '.notice')) === 'Cancelled.', 'cancelled');
  check((await text(page, '#schedules tbody tr td:nth-child(4)')) === 'cancelled', 'listed as cancelled');
  log('scheduled at 12:30 local (07:00 UTC), shown in local time, cancelled');

  step = 'compare';
  await go(page, '/projects/shop/compare?from=production&to=staging');
  check((await text(page, '#compare-summary')).startsWith('1 of 1 flag differ'), `the comparison: ${await text(page, '#compare-summary')}`);
  await page.click('tr[data-flag="new-checkout"] input[type=checkbox]');
  const beforePromote = dialogs.length;
  response = await submit(page, 'form[action$="/promote"] button[type=submit]');
  check(dialogs.length === beforePromote + 1 && dialogs.at(-1).message.includes('Staging'), 'promoting asked first');
  check((await text(page, '.notice')).startsWith('Promoted.'), `promoted: ${response.status()}`);
  check((await text(page, '#compare-summary')).startsWith('0 of 1 flag differ'), 'nothing differs after the promotion');
  log('production compared with staging and promoted with one confirmation');
  await page.emulateTimezone();

  step = 'server key';
  await go(page, '/projects/shop/keys');
  await page.select('#key-env', 'production');
  await page.select('#key-kind', 'server');
  await page.type('#key-name', 'browser-test');
  response = await submit(page, 'form[action="/projects/shop/keys"] button[type=submit]');
  const secret = await text(page, '#new-secret');
  check(secret.startsWith('fs_srv_'), `a server key is shown once: ${secret.slice(0, 7)}`);
  check(await page.$('button[data-copy="new-secret"]'), 'with a copy button');
  log('server key created and shown once');

  step = 'bundle';
  const bundle = await fetch(base + '/sdk/v1/bundle', { headers: { Authorization: `Bearer ${secret}` } });
  check(bundle.status === 200, `GET /sdk/v1/bundle: ${bundle.status}`);
  const body = await bundle.json();
  const flag = body.flags.find((f) => f.key === 'new-checkout');
  check(flag, 'the bundle has the flag');
  const served = flag.environments.production;
  check(served.enabled === true, 'enabled in production in the bundle');
  check(served.rules.length === 1 && served.rules[0].clauses[0].op === 'ends_with'
    && served.rules[0].clauses[0].values[0] === '@acme.com', `the rule in the bundle: ${JSON.stringify(served.rules)}`);
  check(JSON.stringify(served.fallthrough.rollout.variations) === JSON.stringify([
    { variation: 'on', weight: 30000 }, { variation: 'off', weight: 70000 }]), `the rollout: ${JSON.stringify(served.fallthrough)}`);
  log('the bundle serves the toggle, the rule and the rollout');

  step = 'webhook';
  // A receiver on 127.0.0.1 (the server runs with --webhook-allow-private); "send test event"
  // must reach it, signed with the secret the page showed once.
  const hooked = [];
  const receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      hooked.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  try {
    await go(page, '/projects/shop/webhooks');
    await page.type('#hook-url', `http://127.0.0.1:${receiver.address().port}/hook?team=a,b`);
    response = await submit(page, '#new-webhook button[type=submit]');
    check(response.status() === 201, `creating the webhook: ${response.status()}`);
    const hookSecret = await text(page, '#new-secret');
    check(hookSecret.startsWith('whsec_'), 'the webhook secret is shown once');
    await submit(page, 'tr[data-webhook] a');
    check(!(await page.content()).includes(hookSecret), 'and never again');
    response = await submit(page, '#send-test');
    check(response.status() === 200, `send test event: ${response.status()}`);
    check((await text(page, '.test-status')) === '204', `the test result: ${await text(page, '#test-result')}`);
    check((await page.$$('tr.attempt[data-outcome="test"]')).length === 1, 'the delivery log shows the attempt');
    check(hooked.length === 1, `the receiver got ${hooked.length} requests`);
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(hooked[0].headers['flagstaff-signature']) ?? [];
    const expected = createHmac('sha256', hookSecret).update(`${t}.`).update(hooked[0].body).digest('hex');
    check(v1 === expected, 'the test event is signed with the secret');
    check(JSON.parse(hooked[0].body.toString()).type === 'webhook.test', 'a webhook.test event');
  } finally {
    receiver.close();
  }
  log('webhook created (secret shown once), test event delivered and logged');

  step = 'csrf';
  const noToken = await page.evaluate(async () => {
    const r = await fetch('/projects', { method: 'POST', body: new URLSearchParams({ key: 'evil', name: 'Evil' }) });
    return r.status;
  });
  check(noToken === 403, `a POST without the CSRF token: ${noToken}`);
  const withToken = await page.evaluate(async () => {
    const csrf = document.querySelector('input[name=csrf]').value;
    const r = await fetch('/projects', { method: 'POST', body: new URLSearchParams({ csrf, key: 'with-token' }), redirect: 'manual' });
    return r.type === 'opaqueredirect' ? 303 : r.status;
  });
  check(withToken === 303, `the same POST with the token: ${withToken}`);
  log('a POST without the CSRF token is refused with 403');

  step = 'screenshots';
  for (const [name, url] of [
    ['projects', '/projects'],
    ['flags', '/projects/shop/flags'],
    ['editor', '/projects/shop/flags/new-checkout?env=production'],
    ['segments', '/projects/shop/segments'],
    ['keys', '/projects/shop/keys'],
    ['webhooks', '/projects/shop/webhooks'],
    ['insights', '/projects/shop/flags/new-checkout/insights?env=production'],
    ['audit', '/audit?project=shop'],
    ['users', '/users'],
    ['account', '/account'],
  ]) {
    response = await go(page, url);
    check(response.status() === 200, `${url}: ${response.status()}`);
    await screenshot(page, name);
  }
  log(`screenshots saved in ${shots}`);

  step = 'viewer';
  const viewerContext = await browser.createBrowserContext();
  const viewer = await open(viewerContext);
  response = await signIn(viewer, viewerEmail, password);
  check(viewer.url() === base + '/projects', `viewer signed in: ${viewer.url()}`);
  await go(viewer, '/projects/shop/flags');
  check((await viewer.$$('form.js-toggle')).length === 0, 'a viewer sees no toggle');
  check((await text(viewer, 'tr[data-flag="new-checkout"] td[data-env="production"] .state')) === 'On', 'but sees the state');
  const forged = await viewer.evaluate(async () => {
    const csrf = document.querySelector('input[name=csrf]').value;
    const r = await fetch('/projects/shop/flags/new-checkout/environments/production/toggle', {
      method: 'POST',
      headers: { Accept: 'application/json', 'X-CSRF-Token': csrf },
      body: new URLSearchParams({ csrf, enabled: 'false' }),
    });
    return r.status;
  });
  check(forged === 403, `a viewer's forged toggle: ${forged}`);
  await viewerContext.close();
  log('a viewer sees no toggle; a forged toggle is 403');

  step = 'throttling';
  const lockedContext = await browser.createBrowserContext();
  const locked = await open(lockedContext);
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    response = await signIn(locked, lockedEmail, 'not the password');
    statuses.push(response.status());
  }
  check(JSON.stringify(statuses) === JSON.stringify([401, 401, 401, 401, 401, 429]), `sign-in statuses: ${statuses}`);
  check((await text(locked, '.error-message')).includes('Too many failed sign-ins'), 'the 429 page says why');
  response = await signIn(locked, lockedEmail, password);
  check(response.status() === 429, `even the right password waits: ${response.status()}`);
  await lockedContext.close();
  log('sign-ins are throttled after 5 failures (429)');

  step = 'sign-out';
  response = await submit(page, 'form[action="/sign-out"] button[type=submit]');
  check(page.url().startsWith(base + '/sign-in'), `signed out: ${page.url()}`);
  await go(page, '/projects');
  check(page.url().startsWith(base + '/sign-in'), 'the session is over');
  log('signed out');

  step = 'end';
  const alerts = dialogs.filter((d) => d.type === 'alert');
  check(alerts.length === 0, `a script ran: ${JSON.stringify(alerts)}`);
  check(problems.length === 0, `the pages logged errors:\n${problems.join('\n')}`);
  log('ok');
} catch (e) {
  failed = e;
} finally {
  await chromium.close();
}
if (failed) {
  process.stderr.write(`FAILED at step "${step}": ${failed.message}\n`);
  if (problems.length) process.stderr.write(`console problems:\n${problems.join('\n')}\n`);
  process.exit(1);
}
