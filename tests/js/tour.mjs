// The first ten minutes (issue 20) in headless Chromium (Debian's chromium driven by
// puppeteer-core), against a real Flagstaff server with no users, started by
// tests/it/admin/browser.rs:
//
//   node tour.mjs <url> <setup path (/setup?token=…)> <screenshot dir>
//
// As a new user: the setup link → the first admin → the empty projects page → the sample
// project → its keys and snippets (the curl snippet is run, and must answer with the flags) →
// the live demo page → a context change → a toggle in another tab, which the demo page shows
// (waiting for it: no time threshold beyond a generous timeout) → a server key refused by the
// demo page. Screenshots at desktop and phone widths. One line per step; exit 1 on failure.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { launchChromium } from './lib.mjs';

const [base, setupPath, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: tour.mjs <url> <setup path> <screenshot dir>');
  process.exit(2);
}
fs.mkdirSync(shots, { recursive: true });

const DESKTOP = { width: 1280, height: 900 };
// A phone's width without puppeteer's isMobile, whose change reloads the page (and a page
// answering a POST must not be posted again).
const PHONE = { width: 390, height: 844 };
const EMAIL = 'first-admin@example.com';
const PASSWORD = 'a long first admin password';
// Generous: a hang guard, not a speed check.
// Polled on a timer: requestAnimationFrame (the default) does not run in a background tab.
const WAIT = { timeout: 20000, polling: 100 };

const problems = [];
let step = 'start';
const log = (message) => process.stdout.write(`[${step}] ${message}\n`);
const check = (condition, message) => {
  if (!condition) throw new Error(message);
};

function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${step} (${label}): console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${step} (${label}): page error: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`${step} (${label}): unexpected dialog ${d.type()}: ${d.message()}`);
    d.dismiss();
  });
}

async function submit(page, selector) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
  return response;
}

const text = (page, selector) => page.$eval(selector, (el) => el.textContent.trim());

/** Screenshots without reloading (a page answering a POST must not be posted again). */
async function screenshot(page, name) {
  for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewport(viewport);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    if (label === 'phone') {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${name}: the page is ${overflow}px wider than a phone screen`);
    }
    await page.screenshot({ path: path.join(shots, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewport(DESKTOP);
}

// The demo tab keeps its stream and timers while the other tab toggles.
const chromium = await launchChromium([
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
]);
const browser = chromium.browser;

let failed = null;
try {
  const context = await browser.createBrowserContext();
  await context.overridePermissions(base, ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);
  const page = await context.newPage();
  watch(page, 'main');
  await page.setViewport(DESKTOP);

  step = 'setup';
  let response = await page.goto(base + setupPath, { waitUntil: 'load' });
  check(response.status() === 200, `the setup link answered ${response.status()}`);
  await page.type('#email', EMAIL);
  await page.type('#password', PASSWORD);
  await page.type('#confirm', PASSWORD);
  response = await submit(page, 'form[action="/setup"] button[type=submit]');
  check(page.url() === base + '/projects', `after the setup: ${page.url()}`);
  log('the setup link created the first admin, signed in');

  step = 'empty projects';
  check((await text(page, '#start-title')) === 'No projects yet', 'the empty projects page says so');
  check(await page.$('#create-sample'), 'and offers the sample project');
  await screenshot(page, 'projects-empty');
  log('the empty projects page offers the sample project');

  step = 'sample project';
  response = await submit(page, '#create-sample');
  check(response.status() === 201, `creating the sample project: ${response.status()}`);
  const clientKey = await text(page, '#sample-client-key');
  const serverKey = await text(page, '#sample-server-key');
  check(clientKey.startsWith('fs_cli_') && serverKey.startsWith('fs_srv_'), 'both keys are shown once');
  await screenshot(page, 'sample');
  log('the sample project shows its client and server keys once');

  step = 'snippets';
  const snippet = (id) => text(page, `#snippet-${id}`);
  const curl = await snippet('curl');
  check(curl.startsWith(`curl -sS -X POST '${base}/ofrep/v1/evaluate/flags'`), `the curl snippet names this server: ${curl}`);
  check(curl.includes(`Bearer ${serverKey}`), 'the curl snippet carries the server key');
  check((await snippet('browser')).includes(`url: '${base}'`) && (await snippet('browser')).includes(clientKey), 'the browser snippet: URL and client key');
  for (const id of ['rust', 'node', 'python']) {
    const code = await snippet(id);
    check(code.includes(base) && code.includes(serverKey), `the ${id} snippet: URL and server key`);
  }
  check((await snippet('openfeature')).includes(`Bearer ${clientKey}`), 'the OpenFeature snippet: client key');
  const answer = JSON.parse(execFileSync('sh', ['-c', curl], { encoding: 'utf8', timeout: 20000 }));
  const served = Object.fromEntries(answer.flags.map((f) => [f.key, f]));
  check(Object.keys(served).length === 5, `curl: every flag of the sample, got ${Object.keys(served)}`);
  check(served['beta-dashboard'].value === true && served['beta-dashboard'].reason === 'TARGETING_MATCH',
    `curl: the beta flag for a beta tester: ${JSON.stringify(served['beta-dashboard'])}`);
  check(served['recommendations-kill-switch'].value === true, 'curl: the kill switch is on');
  await page.click('button[data-copy="snippet-curl"]');
  await page.waitForFunction(() => document.querySelector('button[data-copy="snippet-curl"]').textContent === 'Copied', WAIT);
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === curl, 'the copy button copies the snippet');
  log('the snippets name this server and the new keys; the curl snippet answers with the flags');

  step = 'demo';
  await submit(page, '#open-demo');
  check(page.url() === base + '/projects/sample/environments/development/try', `the key left the address bar: ${page.url()}`);
  const value = (flag) => `#try-flags tr[data-flag="${flag}"] td.value`;
  await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'true', WAIT, value('beta-dashboard'));
  const row = await page.$$eval('#try-flags tr[data-flag="beta-dashboard"] td', (tds) => tds.map((td) => td.textContent));
  check(row[1] === 'on' && row[2] === 'TARGETING_MATCH', `variant and reason shown: ${row}`);
  const flagsShown = await page.$$eval('#try-flags tbody tr', (trs) => trs.map((tr) => tr.dataset.flag));
  check(!flagsShown.includes('recommendations-kill-switch') && flagsShown.length === 4, `client-side flags only: ${flagsShown}`);
  check((await text(page, value('storefront-settings'))).includes('"banner"'), 'the JSON config is shown');
  log('the demo page shows the client-side flags with value, variant and reason');

  step = 'context';
  await page.$eval('#try-targeting-key', (i) => { i.value = ''; });
  await page.type('#try-targeting-key', 'user-99');
  await page.$eval('#try-attributes', (t) => { t.value = '{"email": "bob@other.org"}'; });
  await page.click('#try-context-form button[type=submit]');
  await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'false', WAIT, value('beta-dashboard'));
  await page.$eval('#try-attributes', (t) => { t.value = '{"email": "ada@example.com"}'; });
  await page.click('#try-context-form button[type=submit]');
  await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'true', WAIT, value('beta-dashboard'));
  log('a context typed in the page is evaluated (segment rule by email)');
  await screenshot(page, 'try');

  step = 'live';
  const other = await context.newPage();
  watch(other, 'other tab');
  await other.setViewport(DESKTOP);
  await other.goto(base + '/projects/sample/flags', { waitUntil: 'load' });
  const toggle = 'tr[data-flag="beta-dashboard"] td[data-env="development"] button.toggle';
  check((await other.$eval(toggle, (b) => b.getAttribute('aria-checked'))) === 'true', 'the beta flag starts on in development');
  await other.click(toggle);
  await other.waitForFunction((s) => document.querySelector(s).getAttribute('aria-checked') === 'false', WAIT, toggle)
    .catch(async (e) => { throw new Error(`the toggle in the other tab: ${e.message}: ${await text(other, 'tr[data-flag="beta-dashboard"] td[data-env="development"]')}`); });
  await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'false', WAIT, value('beta-dashboard'))
    .catch(async (e) => { throw new Error(`the demo page: ${e.message}: ${await text(page, '#try-status')} / ${await text(page, '#try-flags tbody')}`); });
  await page.waitForFunction(() => {
    const tds = document.querySelectorAll('#try-flags tr[data-flag="beta-dashboard"] td');
    return tds.length === 3 && tds[2].textContent === 'DISABLED';
  }, WAIT);
  check(await page.$('#try-flags tr[data-flag="beta-dashboard"].changed'), 'the changed row is marked');
  log('a toggle in another tab shows on the demo page without a reload');

  step = 'server key';
  await page.bringToFront();
  await page.click('#try-forget');
  await page.type('#try-key-input', serverKey);
  await page.click('#try-key-form button[type=submit]');
  check((await text(page, '#try-key-error')).includes('server key'), 'a server key is refused');
  check((await page.$$('#try-flags tbody tr')).length === 0, 'and nothing is evaluated with it');
  check(await page.evaluate(() => !Object.values(sessionStorage).some((v) => v.startsWith('fs_srv_'))), 'nor kept');
  await page.$eval('#try-key-input', (i) => { i.value = ''; });
  await page.type('#try-key-input', clientKey);
  await page.click('#try-key-form button[type=submit]');
  await page.waitForFunction((s) => document.querySelector(s)?.textContent === 'false', WAIT, value('beta-dashboard'));
  log('the demo page refuses a server key and takes a pasted client key');

  step = 'connect';
  await other.bringToFront();
  await other.goto(base + '/projects/sample/environments/development/connect', { waitUntil: 'load' });
  check((await text(other, '#snippet-curl')).includes('YOUR_CLIENT_KEY'), 'the environment page shows placeholders');
  check(!(await other.content()).includes(serverKey) && !(await other.content()).includes(clientKey), 'and no key');
  await screenshot(other, 'connect');
  log('the environment page shows the snippets with placeholders, no key');

  step = 'end';
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
