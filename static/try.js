// The live demo page (/projects/{p}/environments/{e}/try): a tiny app built on the browser SDK.
// Values come from flagstaff.js (and change live over its stream); the variant and reason of
// each flag from OFREP's bulk evaluation with the same client key. Everything shown is set
// with textContent: flag keys and values are never read as HTML.
//
// The client key comes from the address's fragment (#key=…, removed at once), this tab's
// sessionStorage, or the person pasting it. A server key is refused: it never belongs in a page.
import { createClient } from '/sdk/flagstaff.js';

const root = document.getElementById('try');
const $ = (id) => document.getElementById(id);
const remembered = 'flagstaff-try:' + root.dataset.project + '/' + root.dataset.environment;
let client = null;
let key = null;
let ctx = {};
let results = {};
let changedAt = {};
let generation = 0;

const status = (text) => { $('try-status').textContent = text; };
const keyError = (text) => { const box = $('try-key-error'); if (box) box.textContent = text || ''; };
const time = () => new Date().toLocaleTimeString();

function problemWith(candidate) {
  if (!candidate) return 'Paste a client key of this environment.';
  if (candidate.startsWith('fs_srv_')) {
    return 'That is a server key: it reads every rule and must never be used in a browser. Use a client key (fs_cli_…).';
  }
  if (!/^fs_cli_[A-Za-z0-9_-]+$/.test(candidate)) return 'A client key starts with fs_cli_.';
  return null;
}

function keyFromFragment() {
  const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  if (!match) return null;
  // The key leaves the address bar (and this history entry) at once.
  history.replaceState(null, '', location.pathname + location.search);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;
  }
}

function readContext() {
  const text = $('try-attributes').value.trim();
  const attributes = text ? JSON.parse(text) : {};
  if (!attributes || typeof attributes !== 'object' || Array.isArray(attributes)) {
    throw new Error('The attributes must be a JSON object, like {"email": "ada@example.com"}.');
  }
  const next = { ...attributes };
  const targetingKey = $('try-targeting-key').value.trim();
  if (targetingKey) next.targetingKey = targetingKey;
  return next;
}

const shown = (value) => (value === undefined ? '—' : JSON.stringify(value));

function render() {
  const body = $('try-flags').tBodies[0];
  body.textContent = '';
  for (const flag of Object.keys(results).sort()) {
    const result = results[flag];
    const value = client ? client.get(flag) : undefined;
    const row = document.createElement('tr');
    row.dataset.flag = flag;
    if (changedAt[flag]) row.className = 'changed';
    const cells = [
      flag,
      value === undefined ? '— (the app’s default)' : shown(value),
      result.variant || '—',
      result.errorCode ? `${result.reason || 'ERROR'} (${result.errorCode})` : result.reason || '—',
    ];
    for (const [i, text] of cells.entries()) {
      const cell = document.createElement(i === 0 ? 'th' : 'td');
      if (i === 0) cell.scope = 'row';
      if (i === 1) cell.className = 'value';
      cell.textContent = text;
      if (i === 0 && changedAt[flag]) {
        const note = document.createElement('span');
        note.className = 'hint';
        note.textContent = ' changed at ' + changedAt[flag];
        cell.append(note);
      }
      row.append(cell);
    }
    body.append(row);
  }
  if (!Object.keys(results).length && key) status('This key sees no client-side flags in this environment.');
}

/** Variants and reasons for the current context (the SDK itself only keeps values). */
async function loadDetails() {
  const mine = ++generation;
  const res = await fetch('/ofrep/v1/evaluate/flags', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + key },
    body: JSON.stringify({ context: ctx }),
  });
  if (mine !== generation || !key) return;
  if (res.status === 401 || res.status === 403) {
    forget('This key does not work here: it was revoked, or belongs to another environment.');
    return;
  }
  if (!res.ok) throw new Error('the server answered ' + res.status);
  const body = await res.json();
  if (mine !== generation) return;
  results = {};
  for (const result of body.flags || []) results[result.key] = result;
  render();
}

function refresh() {
  loadDetails().catch((e) => status('Cannot evaluate: ' + e.message));
}

function forget(message) {
  if (client) client.close();
  client = null;
  key = null;
  results = {};
  changedAt = {};
  try {
    sessionStorage.removeItem(remembered);
  } catch {
    // nothing was kept
  }
  if ($('try-key-form')) $('try-key-form').hidden = false;
  if ($('try-using')) $('try-using').hidden = true;
  render();
  status('Waiting for a client key.');
  keyError(message);
}

function start(candidate) {
  const problem = problemWith(candidate);
  if (problem) {
    keyError(problem);
    return;
  }
  keyError('');
  key = candidate;
  try {
    sessionStorage.setItem(remembered, key);
  } catch {
    // kept for this page only
  }
  if ($('try-key-form')) $('try-key-form').hidden = true;
  if ($('try-using')) {
    $('try-using').hidden = false;
    $('try-key-prefix').textContent = key.slice(0, 12);
  }
  try {
    ctx = readContext();
  } catch {
    ctx = {};
  }
  if (client) client.close();
  client = createClient({ url: location.origin, key, context: ctx });
  client.on('change', (flags) => {
    if (Object.keys(results).length) for (const flag of flags) changedAt[flag] = time();
    status('Live: listening for changes. Last change at ' + time() + '.');
    refresh();
  });
  client.on('error', (e) => status('Cannot reach the server: ' + e.message));
  status('Connecting…');
  client.ready.then((fresh) => {
    if (fresh) status('Live: listening for changes.');
    refresh();
  });
}

const form = $('try-key-form');
if (form) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    start($('try-key-input').value.trim());
  });
  $('try-forget').addEventListener('click', () => forget(''));
}

$('try-context-form').addEventListener('submit', (event) => {
  event.preventDefault();
  try {
    ctx = readContext();
  } catch (e) {
    $('try-attributes-live').textContent = e.message;
    return;
  }
  $('try-attributes-live').textContent = '';
  if (!client) return;
  changedAt = {};
  client.identify(ctx).then(refresh);
});

let initial = keyFromFragment();
if (!initial) {
  try {
    initial = sessionStorage.getItem(remembered);
  } catch {
    initial = null;
  }
}
if (initial && form) start(initial);
