// The operator console in a real browser (headless Chromium driven by
// playwright-core): live rows and statuses without a reload, the timeline,
// a send through the proxy to a fake Bandwidth, and an archived MMS picture
// shown inline. Saves a screenshot.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startWorker, postCallback, uniqueId, SECRETS, ROOT, sha256 } from './harness.mjs';
import { freePort } from '../support/ports.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const KEY = 'console-client-key';

/** A real PNG (RGB, a gradient), for the archived-media view. */
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const td = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0); td.copy(out, 4); out.writeUInt32BE(crc(td), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4); ihdr[8] = 8; ihdr[9] = 2;
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) row.set([40 + (x * 200) / width, 90 + (y * 140) / height, 200], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}
const PNG = png(96, 64);
const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome'].filter(Boolean);
const executablePath = CANDIDATES.find((p) => existsSync(p));

let w, fake, browser, page;
before(async () => {
  assert.ok(executablePath, `no Chromium found (tried ${CANDIDATES.join(', ')}): scripts/setup.sh installs Debian's chromium, or set CHROMIUM_PATH`);
  fake = await startFakeBandwidth();
  // A forwarding target nobody listens on: its forwards die quickly.
  const deadPort = await freePort();
  w = await startWorker({ vars: {
    FORWARD_TARGETS: JSON.stringify([{ id: 'down', url: `http://127.0.0.1:${deadPort}/down`, secret: 'whsec_' + Buffer.from('console-target').toString('base64') }]),
    FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '200', FORWARD_GIVE_UP_MS: '800',
    BW_ACCOUNT_ID: '9900000', BW_APPLICATION_ID: 'console-app',
    BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    BW_CLIENT_ID: 'id', BW_CLIENT_SECRET: 'console-client-secret',
    CLIENT_KEYS: JSON.stringify([{ id: 'console', key_sha256: sha256(KEY), allowed_from: ['+15551110000'], allowed_origins: [] }]),
  } });
  browser = await chromium.launch({
    executablePath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
});
after(async () => { await browser?.close(); await w?.stop(); await fake?.close(); });

function event(id, type, extra = {}) {
  return {
    type, time: new Date().toISOString(), description: type, to: '+15552220042',
    message: { id, owner: '+15551110000', applicationId: 'app', time: new Date().toISOString(), segmentCount: 1, direction: 'out', to: ['+15552220042'], from: '+15551110000', text: extra.text ?? '' },
    ...extra.top,
  };
}

test('the console signs in once, shows rows and status changes live, and sends through the proxy', async () => {
  await page.goto(`${w.url}/`);
  // Accessible names, not CSS selectors: the form is usable by label.
  await page.getByLabel('API token (kept in this tab only)').fill(SECRETS.API_TOKEN);
  await page.getByRole('button', { name: 'Open the ledger' }).click();
  await page.getByRole('heading', { name: 'Recent messages' }).waitFor();
  await page.locator('#live-state[data-on="true"]').waitFor({ timeout: 10000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('bw-ledger-token')), SECRETS.API_TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');

  // A callback from outside appears without a reload.
  const id = uniqueId('console');
  const navigations = [];
  page.on('framenavigated', () => navigations.push(Date.now()));
  const t0 = Date.now();
  await postCallback(w.url, [event(id, 'message-sending')]);
  const row = page.locator(`tr[data-message-id="${id}"]`);
  await row.waitFor({ timeout: 10000 });
  const appeared = Date.now() - t0;
  assert.equal(await row.locator('.status').innerText(), 'sending', 'status shown as text');
  const t1 = Date.now();
  await postCallback(w.url, [event(id, 'message-delivered', { top: { carrierName: 'Example' } })]);
  await row.locator('.status', { hasText: 'delivered' }).waitFor({ timeout: 10000 });
  const changed = Date.now() - t1;
  assert.deepEqual(navigations, [], 'no reload');
  console.log(`callback to screen: new row ${appeared} ms, status change ${changed} ms`);

  // The timeline, with a contradiction marked.
  await postCallback(w.url, [event(id, 'message-failed', { top: { errorCode: 4720 } })]);
  await row.locator('.status', { hasText: 'failed' }).waitFor({ timeout: 10000 });
  await row.getByRole('button', { name: id }).click();
  await page.locator('#timeline-list li.contradicted').waitFor();
  assert.match(await page.locator('#timeline-list').innerText(), /message-delivered[^\n]*contradicted/);

  // Keyboard: the send form is reachable and usable without a mouse.
  await page.getByLabel('Client key').fill(KEY);
  await page.getByLabel('From').fill('+15551110000');
  await page.getByLabel('To (comma-separated)').fill('+15552220077');
  await page.getByLabel('Text').fill('Sent from the console');
  const sendsBefore = fake.messageRequests.length;
  await page.getByLabel('Text').press('Tab');
  await page.keyboard.press('Enter');
  await page.locator('#send-result', { hasText: 'Accepted' }).waitFor({ timeout: 10000 });
  assert.equal(fake.messageRequests.length, sendsBefore + 1);
  const sent = JSON.parse(fake.messageRequests.at(-1).body);
  assert.deepEqual(sent.to, ['+15552220077']);
  assert.equal(sent.text, 'Sent from the console');
  await page.locator('td', { hasText: 'Sent from the console' }).first().waitFor({ timeout: 10000 });

  // A send to another country is refused by the key's default rule, and the
  // keys table shows the send and the refusal.
  await page.getByLabel('To (comma-separated)').fill('+447700900077');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('#send-result', { hasText: '+447700900077' }).waitFor({ timeout: 10000 });
  assert.equal(fake.messageRequests.length, sendsBefore + 1, 'the refused send never reached Bandwidth');
  const keyRow = page.locator('#key-rows tr', { hasText: 'console' });
  await keyRow.locator('td', { hasText: 'destination 1' }).waitFor({ timeout: 10000 });
  assert.equal(await keyRow.locator('td').nth(1).innerText(), '1', 'one send today');

  // An inbound MMS: its archived picture shows inline in the timeline.
  const mms = uniqueId('console-mms');
  const picture = `/api/v2/users/9900000/media/${mms}/0/photo.png`;
  fake.media.put(picture, PNG, 'image/png');
  await postCallback(w.url, [{
    type: 'message-received', time: new Date().toISOString(), description: 'Incoming message received', to: '+15551110000',
    message: { id: mms, owner: '+15551110000', applicationId: 'app', time: new Date().toISOString(), segmentCount: 1,
      direction: 'in', to: ['+15551110000'], from: '+15554440001', text: 'a picture', media: [`${fake.url}${picture}`] },
  }]);
  const mmsRow = page.locator(`tr[data-message-id="${mms}"]`);
  await mmsRow.waitFor({ timeout: 10000 });
  // The archive runs after the ack: open the timeline once it is done.
  await page.waitForFunction(async ([id, t]) => {
    const r = await fetch(`/messages/${id}`, { headers: { Authorization: `Bearer ${t}` } });
    return (await r.json()).archivedMedia?.[0]?.status === 'archived';
  }, [mms, SECRETS.API_TOKEN], { timeout: 10000 });
  await mmsRow.getByRole('button', { name: mms }).click();
  const img = page.getByRole('img', { name: 'Archived image photo.png' });
  await img.waitFor({ timeout: 10000 });
  await page.waitForFunction(() => {
    const i = document.querySelector('#timeline-media img');
    return i && i.complete && i.naturalWidth > 0;
  }, null, { timeout: 10000 });
  assert.deepEqual(await img.evaluate((i) => [i.naturalWidth, i.naturalHeight, i.src.startsWith('blob:')]), [96, 64, true]);

  // An SVG in the same kind of MMS is offered as a download, never inline.
  const svgMms = uniqueId('console-svg');
  const svgPath = `/api/v2/users/9900000/media/${svgMms}/0/drawing.svg`;
  fake.media.put(svgPath, Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>parent.pwned=1</script></svg>'), 'image/svg+xml');
  await postCallback(w.url, [{
    type: 'message-received', time: new Date().toISOString(), description: 'Incoming message received', to: '+15551110000',
    message: { id: svgMms, owner: '+15551110000', applicationId: 'app', time: new Date().toISOString(), segmentCount: 1,
      direction: 'in', to: ['+15551110000'], from: '+15554440001', text: 'a drawing', media: [`${fake.url}${svgPath}`] },
  }]);
  const svgRow = page.locator(`tr[data-message-id="${svgMms}"]`);
  await svgRow.waitFor({ timeout: 10000 });
  await page.waitForFunction(async ([id, t]) => {
    const r = await fetch(`/messages/${id}`, { headers: { Authorization: `Bearer ${t}` } });
    return (await r.json()).archivedMedia?.[0]?.status === 'archived';
  }, [svgMms, SECRETS.API_TOKEN], { timeout: 10000 });
  await svgRow.getByRole('button', { name: svgMms }).click();
  await page.getByRole('link', { name: 'Download drawing.svg' }).waitFor({ timeout: 10000 });
  assert.equal(await page.locator('#timeline-media img').count(), 0, 'no SVG rendered inline');

  // Opt-outs: a STOP shows in the table, live; a search finds it, and its
  // history opens.
  const stopper = '+15554440066';
  await postCallback(w.url, [{
    type: 'message-received', time: new Date().toISOString(), description: 'Incoming message received', to: '+15551110000',
    message: { id: uniqueId('console-stop'), owner: '+15551110000', applicationId: 'app', time: new Date().toISOString(),
      segmentCount: 1, direction: 'in', to: ['+15551110000'], from: stopper, text: 'STOP' },
  }]);
  const optRow = page.locator('#optout-rows tr', { hasText: stopper });
  await optRow.waitFor({ timeout: 10000 });
  assert.match(await optRow.innerText(), /account[\s\S]*keyword/);
  await page.getByLabel('Opted-out number').fill(stopper);
  await page.getByRole('button', { name: 'Search opt-outs' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#optout-rows tr').length === 1, null, { timeout: 10000 });
  await optRow.getByRole('button', { name: 'History' }).click();
  await page.locator('#optout-history li', { hasText: 'opted-out (keyword)' }).waitFor({ timeout: 10000 });

  // Quarantine count reflects a bad callback, live.
  await postCallback(w.url, `garbage ${uniqueId('g')}`);
  await page.waitForFunction(() => Number(document.getElementById('quarantine-count').textContent) >= 1, null, { timeout: 10000 });

  const dir = join(ROOT, 'tests/artifacts');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, 'console.png'), fullPage: true });
});

test('the targets table shows a failing endpoint, and "Replay all dead" queues its dead forwards again', async () => {
  const button = page.getByRole('button', { name: 'Replay all dead forwards of down' });
  await button.waitFor({ timeout: 10000 });
  // The console refreshes on live changes: nudge it until a forward has died.
  const deadline = Date.now() + 30000;
  while ((await button.isDisabled()) && Date.now() < deadline) {
    await postCallback(w.url, [event(uniqueId('nudge'), 'message-sending')]);
    await page.waitForTimeout(1000);
  }
  assert.equal(await button.isDisabled(), false, 'a dead forward enables the button');
  const row = page.locator('#target-rows tr', { hasText: 'down' });
  assert.match(await row.innerText(), /network/, 'the failing column shows the last error');
  const dead = Number(await row.locator('td').nth(3).innerText());
  assert.ok(dead >= 1);
  await button.click();
  await page.waitForFunction(() => /\d+ dead forwards of down queued again/.test(document.getElementById('announce').textContent), null, { timeout: 10000 });
  const replayed = Number((await page.locator('#announce').textContent()).match(/(\d+) dead/)[1]);
  assert.ok(replayed >= dead, `replayed ${replayed}, ${dead} were shown dead`);
});

test('the console adds a target showing its secret once, then rotates, pauses, enables and deletes it', async () => {
  await page.getByLabel('Target URL').fill('http://127.0.0.1:9/console-api');
  await page.getByLabel('Target id (optional)').fill('console-api');
  await page.getByLabel('Events (comma-separated, empty: all)').fill('message.status');
  await page.getByRole('button', { name: 'Add target' }).click();
  const secret = page.locator('#target-secret');
  await page.waitForFunction(() => /^whsec_/.test(document.getElementById('target-secret').textContent), null, { timeout: 10000 });
  const first = await secret.textContent();
  w.noteSecret(first);
  const row = page.locator('#target-rows tr[data-target="console-api"]');
  await row.waitFor({ timeout: 10000 });
  assert.match(await row.innerText(), /console-api \(api\)[\s\S]*active/);
  assert.ok(!(await row.innerText()).includes('whsec_'), 'the table never shows a secret');

  await page.getByRole('button', { name: 'Rotate the secret of console-api' }).click();
  await page.waitForFunction((old) => { const s = document.getElementById('target-secret').textContent; return /^whsec_/.test(s) && s !== old; }, first, { timeout: 10000 });
  w.noteSecret(await secret.textContent());

  await page.getByRole('button', { name: 'Pause console-api' }).click();
  await page.getByRole('button', { name: 'Enable console-api' }).waitFor({ timeout: 10000 });
  assert.match(await row.innerText(), /disabled/);
  await page.getByRole('button', { name: 'Enable console-api' }).click();
  await page.getByRole('button', { name: 'Pause console-api' }).waitFor({ timeout: 10000 });
  assert.match(await row.innerText(), /active/);

  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: 'Delete console-api' }).click();
  await row.waitFor({ state: 'detached', timeout: 10000 });
  const res = await fetch(`${w.url}/targets/console-api`, { headers: { Authorization: `Bearer ${SECRETS.API_TOKEN}` } });
  assert.equal(res.status, 404, 'deleted through the console');
  // The config target cannot be deleted here, but it can be paused and
  // enabled: its state is not its configuration.
  assert.equal(await page.getByRole('button', { name: 'Delete down' }).count(), 0);
  const down = page.locator('#target-rows tr[data-target="down"]');
  const toggle = page.getByRole('button', { name: /^(Pause|Enable) down$/ });
  if ((await toggle.textContent()) === 'Pause') {
    await toggle.click();
    await page.getByRole('button', { name: 'Enable down' }).waitFor({ timeout: 10000 });
  }
  assert.match(await down.innerText(), /(disabled|failing) since/);
  await page.getByRole('button', { name: 'Enable down' }).click();
  await page.getByRole('button', { name: 'Pause down' }).waitFor({ timeout: 10000 });
  assert.match(await down.innerText(), /active/);
});

test('on a phone (390 × 844) every section shows without a sideways scroll', async () => {
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  try {
    await phone.goto(`${w.url}/`);
    await phone.getByLabel('API token (kept in this tab only)').fill(SECRETS.API_TOKEN);
    await phone.getByRole('button', { name: 'Open the ledger' }).click();
    await phone.getByRole('heading', { name: 'Recent messages' }).waitFor();
    // Rows in every table that has any: messages, targets (with buttons), keys.
    await phone.locator('#rows tr').first().waitFor({ timeout: 10000 });
    await phone.locator('#target-rows tr').first().waitFor({ timeout: 10000 });
    await phone.locator('#key-rows tr').first().waitFor({ timeout: 10000 });
    const layout = await phone.evaluate(() => {
      const width = document.documentElement.clientWidth;
      const sections = [...document.querySelectorAll('section')].filter((s) => s.offsetParent !== null);
      return {
        width,
        scrollWidth: document.documentElement.scrollWidth,
        sections: sections.map((s) => ({ id: s.getAttribute('aria-labelledby'), left: s.getBoundingClientRect().left, right: s.getBoundingClientRect().right })),
        labelled: [...document.querySelectorAll('#target-rows td[data-label]')].map((td) => td.dataset.label),
      };
    });
    assert.equal(layout.width, 390);
    assert.ok(layout.scrollWidth <= layout.width, `the page is ${layout.scrollWidth} px wide`);
    const names = layout.sections.map((s) => s.id);
    for (const want of ['outcomes-h', 'messages-h', 'dead-h', 'counts-h', 'targets-h', 'keys-h', 'optouts-h', 'send-h']) {
      assert.ok(names.includes(want), `${want} is shown`);
    }
    for (const s of layout.sections) assert.ok(s.left >= 0 && s.right <= layout.width + 0.5, `${s.id} spans ${s.left}–${s.right}`);
    assert.ok(layout.labelled.includes('Pending') && layout.labelled.includes('State'), 'cells name their column');
    const dir = join(ROOT, 'tests/artifacts');
    mkdirSync(dir, { recursive: true });
    await phone.screenshot({ path: join(dir, 'console-phone.png'), fullPage: true });
  } finally {
    await phone.close();
  }
});

test('a wrong token is refused and the console asks again', async () => {
  const p = await browser.newPage();
  await p.goto(`${w.url}/`);
  await p.getByLabel('API token (kept in this tab only)').fill('wrong-token');
  await p.getByRole('button', { name: 'Open the ledger' }).click();
  await p.getByRole('button', { name: 'Open the ledger' }).waitFor({ state: 'visible' });
  await p.waitForFunction(() => sessionStorage.getItem('bw-ledger-token') === null);
  await p.close();
});

test('search, filters, pages, the outcomes chart for a known data set, and replaying one dead forward', async () => {
  const deadPort = await freePort();
  const ops = await startWorker({ vars: {
    FORWARD_TARGETS: JSON.stringify([{ id: 'down', url: `http://127.0.0.1:${deadPort}/down`, secret: 'whsec_' + Buffer.from('console-ops-target').toString('base64'), events: ['message.received'] }]),
    FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '200', FORWARD_GIVE_UP_MS: '600',
    BW_ACCOUNT_ID: '9900000', LEDGER_SHARDS: '4',
  } });
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    // The known data set: 26 delivered (5 of them three hours ago), 3
    // failed (4720 twice, 4405 once), 2 still sending, 1 inbound.
    const now = Date.now();
    const hourOf = (t) => new Date(Math.floor(t / 3_600_000) * 3_600_000).toISOString();
    const expected = {}; // hour -> { delivered, failed, pending }
    const count = (t, k) => { const h = hourOf(t); expected[h] ??= { delivered: 0, failed: 0, pending: 0 }; expected[h][k] += 1; };
    const out = (id, type, to, t, extra = {}) => ({
      type, time: new Date(t).toISOString(), description: type, to, ...extra,
      message: { id, owner: '+15551110000', applicationId: 'app', time: new Date(t).toISOString(), segmentCount: 1,
        direction: 'out', to: [to], from: '+15551110000', text: '' },
    });
    const callbacks = [];
    for (let i = 0; i < 26; i++) {
      const t = i < 5 ? now - 3 * 3_600_000 - i * 1000 : now - i * 1000;
      callbacks.push([out(uniqueId('d'), 'message-delivered', `+1555300${String(i).padStart(4, '0')}`, t)]);
      count(t, 'delivered');
    }
    const failed = [[4720, '+15554000001'], [4720, '+15554000002'], [4405, '+15554000003']];
    for (const [code, to] of failed) {
      callbacks.push([out(uniqueId('f'), 'message-failed', to, now - 500, { errorCode: code })]);
      count(now - 500, 'failed');
    }
    for (const to of ['+15555000001', '+15555000002']) {
      callbacks.push([out(uniqueId('s'), 'message-sending', to, now - 400)]);
      count(now - 400, 'pending');
    }
    const inboundId = uniqueId('in');
    callbacks.push([{ type: 'message-received', time: new Date(now - 300).toISOString(), description: 'in', to: '+15551110000',
      message: { id: inboundId, owner: '+15551110000', applicationId: 'app', time: new Date(now - 300).toISOString(), segmentCount: 1,
        direction: 'in', to: ['+15551110000'], from: '+15556660001', text: 'hello from a customer' } }]);
    for (const c of callbacks) assert.equal((await postCallback(ops.url, c)).status, 200);

    await p.goto(`${ops.url}/`);
    await p.getByLabel('API token (kept in this tab only)').fill(SECRETS.API_TOKEN);
    await p.getByRole('button', { name: 'Open the ledger' }).click();

    // The chart's totals, hours and error codes are the data set's.
    await p.locator('#total-delivered', { hasText: '26' }).waitFor({ timeout: 10000 });
    assert.equal(await p.locator('#total-failed').innerText(), '3');
    assert.equal(await p.locator('#total-pending').innerText(), '2');
    const errorRows = await p.locator('#error-rows tr').allInnerTexts();
    assert.deepEqual(errorRows.map((r) => r.split('\t').map((c) => c.trim())), [['4720', '2'], ['4405', '1']]);
    const hours = await p.evaluate(() => [...document.querySelectorAll('#hour-rows tr')].map((tr) => [...tr.cells].map((c) => c.textContent)));
    assert.equal(hours.length, 24);
    const api = await (await fetch(`${ops.url}/stats/outcomes`, { headers: { Authorization: `Bearer ${SECRETS.API_TOKEN}` } })).json();
    for (const [hour, want] of Object.entries(expected)) {
      const i = api.hours.findIndex((h) => h.hour === hour);
      assert.ok(i >= 0, `hour ${hour} is in the window`);
      assert.deepEqual(hours[i].slice(1).map(Number), [want.delivered, want.failed, want.pending], `hour ${hour}`);
    }
    // The bars carry the same counts (their tooltips).
    const titles = await p.evaluate(() => [...document.querySelectorAll('#chart rect title')].map((t) => t.textContent));
    const barTotal = (kind) => titles.filter((t) => t.endsWith(` ${kind}`)).reduce((n, t) => n + Number(t.match(/: (\d+) /)[1]), 0);
    assert.deepEqual([barTotal('delivered'), barTotal('failed'), barTotal('pending')], [26, 3, 2]);

    // Pages: 32 rows, 25 a page.
    await p.locator('#rows tr').nth(24).waitFor();
    assert.equal(await p.locator('#rows tr').count(), 25);
    await p.getByRole('button', { name: 'Older' }).click();
    await p.locator('#page-number', { hasText: 'page 2' }).waitFor();
    assert.equal(await p.locator('#rows tr').count(), 7);
    assert.equal(await p.getByRole('button', { name: 'Older' }).isDisabled(), true);
    await p.getByRole('button', { name: 'Newer' }).click();
    await p.locator('#page-number', { hasText: 'page 1' }).waitFor();
    assert.equal(await p.locator('#rows tr').count(), 25);

    // Search by number finds it as sender or recipient; by message id, the message.
    await p.getByLabel('Search').fill('+15556660001');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: 'matching +15556660001' }).waitFor();
    assert.deepEqual(await p.locator('#rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.messageId)), [inboundId]);
    await p.getByLabel('Search').fill('+15554000003');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: 'matching +15554000003' }).waitFor();
    assert.deepEqual(await p.locator('#rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.recipient)), ['+15554000003']);
    await p.getByLabel('Search').fill(inboundId);
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: `matching ${inboundId}` }).waitFor();
    assert.equal(await p.locator('#rows tr').count(), 1);

    // Filters: status and direction.
    await p.getByLabel('Search').fill('');
    await p.getByLabel('Status').selectOption('FAILED');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: '3 rows' }).waitFor();
    assert.deepEqual((await p.locator('#rows .status').allInnerTexts()).sort(), ['failed', 'failed', 'failed']);
    await p.getByLabel('Status').selectOption('');
    await p.getByLabel('Direction').selectOption('INBOUND');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: '1 rows' }).waitFor();
    assert.deepEqual(await p.locator('#rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.messageId)), [inboundId]);

    // The inbound message's forward dies (nobody listens); replay just that one.
    const deadline = Date.now() + 20000;
    let dead;
    while (Date.now() < deadline) {
      dead = await (await fetch(`${ops.url}/outbox/dead`, { headers: { Authorization: `Bearer ${SECRETS.API_TOKEN}` } })).json();
      if (dead.items.length) break;
      await p.waitForTimeout(200);
    }
    assert.equal(dead.items.length, 1);
    const webhookId = dead.items[0].webhookId;
    await p.getByRole('button', { name: 'Apply' }).click(); // refreshes the page's views
    const replay = p.getByRole('button', { name: `Replay ${webhookId} to down` });
    await replay.waitFor({ timeout: 10000 });
    await replay.click();
    await p.waitForFunction((id) => document.getElementById('announce').textContent === `1 forward ${id} queued again`, webhookId, { timeout: 10000 });
    await p.screenshot({ path: join(ROOT, 'tests/artifacts/console-ops.png'), fullPage: true });
  } finally {
    await p.close();
    await ops.stop();
  }
});

test('the channel filter lists RBM messages with their channel, and a suggestion reply is found by the replying number', async () => {
  const rcs = await startWorker({ vars: { BW_ACCOUNT_ID: '9900000', LEDGER_SHARDS: '4' } });
  const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    const now = Date.now();
    const rbmId = uniqueId('rbm');
    const smsId = uniqueId('sms');
    const replyId = uniqueId('sug');
    const status = (id, channel, to, t) => [{ type: 'message-delivered', time: new Date(t).toISOString(), description: 'ok', to,
      message: { id, owner: 'Agent', applicationId: 'app', time: new Date(t).toISOString(), segmentCount: 1, direction: 'out',
        to: [to], from: channel === 'RBM' ? 'Agent' : '+15551110000', text: '', channel } }];
    assert.equal((await postCallback(rcs.url, status(rbmId, 'RBM', '+15557770001', now - 3000))).status, 200);
    assert.equal((await postCallback(rcs.url, status(smsId, 'SMS', '+15557770002', now - 2000))).status, 200);
    const reply = [{ type: 'suggestion-response', time: new Date(now - 1000).toISOString(), description: 'Suggestion response received', to: 'Agent',
      message: { id: replyId, owner: 'Agent', applicationId: 'app', time: new Date(now - 1000).toISOString(), segmentCount: 1, direction: 'in',
        to: ['Agent'], from: '+15557770001', channel: 'RBM', suggestionResponse: { text: 'Track my parcel', postbackData: 'dHJhY2s=', pairedMessageId: rbmId } } }];
    assert.equal((await postCallback(rcs.url, reply)).status, 200);

    await p.goto(`${rcs.url}/`);
    await p.getByLabel('API token (kept in this tab only)').fill(SECRETS.API_TOKEN);
    await p.getByRole('button', { name: 'Open the ledger' }).click();
    await p.locator('#rows tr').nth(2).waitFor({ timeout: 10000 });
    await p.getByLabel('Channel').selectOption('RBM');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: '2 rows' }).waitFor();
    const ids = await p.locator('#rows tr').evaluateAll((trs) => trs.map((t) => t.dataset.messageId));
    assert.deepEqual(ids.sort(), [rbmId, replyId].sort(), 'the SMS message is filtered out');
    assert.ok((await p.locator(`#rows tr[data-message-id="${rbmId}"] .flag`).allInnerTexts()).includes('RBM'));

    await p.getByLabel('Channel').selectOption('');
    await p.getByLabel('Search').fill('+15557770001');
    await p.getByRole('button', { name: 'Apply' }).click();
    await p.locator('#list-state', { hasText: 'matching +15557770001' }).waitFor();
    const found = await p.locator('#rows tr').evaluateAll((trs) => trs.map((t) => [t.dataset.messageId, t.cells[5].textContent]));
    assert.ok(found.some(([id, text]) => id === replyId && text === 'Track my parcel'), JSON.stringify(found));
    assert.ok(found.some(([id]) => id === rbmId), 'and the message it answers');
  } finally {
    await p.close();
    await rcs.stop();
  }
});
