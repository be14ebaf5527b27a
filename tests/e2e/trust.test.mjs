// A client key lives in a browser: it must open nothing beyond its own
// sends. Media it names is fetched without Bandwidth's credentials and can
// never starve inbound MMS; "+1" is the United States and Canada; erasure
// and retention reach every copy; the smaller leaks stay shut.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startWorker, postCallback, getJson, uniqueId, settled, API, SECRETS, sha256, shardSql, guardSql, inboundEvent } from './harness.mjs';
import { startFakeBandwidth, startMediaHost } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const OUR = '+15551110000';
const KEYS = { web: 'trust-key-web', other: 'trust-key-other', apps: 'trust-key-apps' };
const KEY_ENTRIES = [
  { id: 'web', key_sha256: sha256(KEYS.web), allowed_from: [OUR], allowed_destinations: ['+1'], rate_per_minute: 1000 },
  { id: 'other', key_sha256: sha256(KEYS.other), allowed_from: ['+15559990000'] },
  { id: 'apps', key_sha256: sha256(KEYS.apps), allowed_from: [OUR], allowed_applications: ['app-2'] },
];
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAAJJRU5ErkJggg==', 'base64');
const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');

let fake;
let host; // never answers the paths the tests hang on
let good; // another origin that answers at once
let w;

function vars(extra = {}) {
  return {
    BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app-1', CLIENT_KEYS: JSON.stringify(KEY_ENTRIES),
    BW_CLIENT_ID: 'trust-client', BW_CLIENT_SECRET: 'trust-secret',
    BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    MEDIA_RETRY_BASE_MS: '2000', MEDIA_RETRY_MAX_MS: '4000', MEDIA_GIVE_UP_MS: '6000',
    LEDGER_SHARDS: '1', RETENTION_DAYS: '30',
    ...extra,
  };
}

before(async () => {
  fake = await startFakeBandwidth();
  host = await startMediaHost();
  good = await startMediaHost();
  w = await startWorker({ vars: vars(), build: 'build-test' });
});

after(async () => {
  await w?.stop();
  await host?.close();
  await good?.close();
  await fake?.close();
});

const bwPath = (name, account = ACCOUNT) => `/api/v2/users/${account}/media/${name}`;

function send(body, { key = KEYS.web, headers = {} } = {}) {
  return fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ to: ['+15552220001'], from: OUR, text: 'hi', ...body }),
  });
}

const inbound = (id, { media = [], from, time } = {}) => [inboundEvent({ id, media, from, time, to: OUR, text: 'pic', applicationId: 'app-1' })];

const erase = async (url, number) => {
  const r = await fetch(`${url}/erasure`, { method: 'POST', headers: API, body: JSON.stringify({ number }) });
  assert.equal(r.status, 200);
  return r.json();
};

test('media a send names never gets Bandwidth\'s credentials, directly or through a redirect', async () => {
  const id = uniqueId('sent-bw');
  const direct = bwPath(`victim-${id}.png`);
  const bounced = bwPath(`victim-bounced-${id}.png`);
  fake.media.put(direct, PNG, 'image/png');
  fake.media.put(bounced, PNG, 'image/png');
  // Another origin that redirects back to Bandwidth's media.
  host.media.failures.set(`/bounce/${id}.png`, Array.from({ length: 50 }, () => ({ status: 302, location: `${fake.url}${bounced}` })));
  fake.nextIds.push(id);
  const r = await send({ media: [`${fake.url}${direct}`, `${host.url}/bounce/${id}.png`] });
  assert.equal(r.status, 202);
  const media = await settled(w.url, id);
  assert.deepEqual(media.map((m) => m.status), ['failed', 'failed']);
  const seen = [...fake.media.requestsFor(direct), ...fake.media.requestsFor(bounced)];
  assert.ok(seen.length >= 2, 'both were tried');
  for (const s of seen) assert.equal(s.headers.authorization, undefined, `credentials sent to ${s.path}`);
  // Nothing protected can be read back, by the key or the operator.
  for (const m of media) {
    for (const headers of [{ Authorization: `Bearer ${KEYS.web}` }, API]) {
      const got = await fetch(`${w.url}${m.url}`, { headers });
      assert.equal(got.status, 404);
      assert.ok(!Buffer.from(await got.arrayBuffer()).includes(PNG));
    }
  }
});

test('inbound media gets credentials only inside the configured account\'s media path', async () => {
  const id = uniqueId('in-scope');
  const mine = bwPath(`${id}/0/a.png`);
  const othersAccount = bwPath(`${id}/0/b.png`, '1234567');
  fake.media.put(mine, PNG, 'image/png');
  fake.media.put(othersAccount, PNG, 'image/png');
  assert.equal((await postCallback(w.url, inbound(id, { media: [`${fake.url}${mine}`, `${fake.url}${othersAccount}`] }))).status, 200);
  const media = await settled(w.url, id);
  assert.deepEqual(media.map((m) => m.status), ['archived', 'failed']);
  assert.match(fake.media.requestsFor(mine)[0].headers.authorization, /^Bearer tok-/);
  for (const s of fake.media.requestsFor(othersAccount)) assert.equal(s.headers.authorization, undefined);
});

test('eleven media URLs are refused with 400 naming the field; ten pass', async () => {
  const urls = (n) => Array.from({ length: n }, (_, i) => `${good.url}/ten/${i}.png`);
  const r = await send({ media: urls(11) });
  assert.equal(r.status, 400);
  const body = await r.json();
  assert.equal(body.type, 'request-validation');
  assert.deepEqual(body.fieldErrors.map((e) => e.fieldName), ['media']);
  assert.equal(fake.messageRequests.filter((m) => JSON.parse(m.body).media?.length === 11).length, 0);
  assert.equal((await send({ media: urls(10) })).status, 202);
});

test('an inbound MMS is archived at once while 10 hostile sends of 10 URLs hang; a healthy host is not held up', async () => {
  const tag = uniqueId('hostile');
  for (let s = 0; s < 10; s++) {
    const media = Array.from({ length: 10 }, (_, i) => {
      host.media.failures.set(`/hang/${tag}/${s}/${i}.png`, Array.from({ length: 20 }, () => ({ hang: true })));
      return `${host.url}/hang/${tag}/${s}/${i}.png`;
    });
    assert.equal((await send({ media })).status, 202);
  }
  // The dead host holds at most one connection at a time.
  const deadline = Date.now() + 10_000;
  while (!host.media.requests.some((r) => r.path.startsWith(`/hang/${tag}/`)) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.ok(host.media.requests.some((r) => r.path.startsWith(`/hang/${tag}/`)), 'the hostile media is being fetched');

  const t0 = Date.now();
  const id = uniqueId('real-mms');
  const pic = bwPath(`${id}/0/real.png`);
  fake.media.put(pic, PNG, 'image/png');
  assert.equal((await postCallback(w.url, inbound(id, { media: [`${fake.url}${pic}`] }))).status, 200);
  const sentId = uniqueId('healthy');
  good.media.put(`/ok/${sentId}.png`, PNG, 'image/png');
  fake.nextIds.push(sentId);
  assert.equal((await send({ media: [`${good.url}/ok/${sentId}.png`] })).status, 202);

  const [m] = await settled(w.url, id, { timeoutMs: 2000 }); // within one retry window (MEDIA_RETRY_BASE_MS)
  assert.equal(m.status, 'archived');
  assert.equal(m.sha256, sha256(PNG));
  const [h] = await settled(w.url, sentId, { timeoutMs: 5000 });
  assert.equal(h.status, 'archived');
  console.log(`inbound archived ${Date.now() - t0} ms after its callback, with 100 hostile URLs hanging`);
  const hanging = host.media.requests.filter((r) => r.path.startsWith(`/hang/${tag}/`));
  assert.equal(hanging.length, 1, `one attempt at a time to the dead host, not ${hanging.length}`);
});

test('"+1" means the United States and Canada: +1 876 needs its own prefix', async () => {
  const jm = await send({ to: ['+18765550123'] });
  assert.equal(jm.status, 403);
  const body = await jm.json();
  assert.equal(body.type, 'forbidden');
  assert.match(body.description, /\+18765550123/);
  assert.equal((await send({ to: ['+14155550123'] })).status, 202);
  assert.equal((await send({ to: ['+16045550123'] })).status, 202);
  // The default rule of a +1 sender (key "apps" has no allowed_destinations).
  assert.equal((await send({ to: ['+18095550123'] }, { key: KEYS.apps })).status, 403);
});

test('a key sends only through the configured application or one it lists', async () => {
  const before = fake.messageRequests.length;
  assert.equal((await send({ applicationId: 'someone-elses-app' })).status, 403);
  assert.equal((await send({ applicationId: 'app-2' })).status, 403, 'not listed for key web');
  assert.equal(fake.messageRequests.length, before, 'nothing refused reached Bandwidth');
  assert.equal((await send({})).status, 202, 'the configured one fills in');
  assert.equal(JSON.parse(fake.messageRequests.at(-1).body).applicationId, 'app-1');
  assert.equal((await send({ applicationId: 'app-2' }, { key: KEYS.apps })).status, 202);
  assert.equal((await send({ applicationId: 'app-1' }, { key: KEYS.apps })).status, 202);
  assert.equal((await send({ applicationId: 'app-3' }, { key: KEYS.apps })).status, 403);
});

test('/media answers an out-of-scope key the same 404 for an existing and a missing file; non-images go as attachments', async () => {
  const id = uniqueId('scope');
  const pic = bwPath(`${id}/0/p.png`);
  const svg = bwPath(`${id}/1/s.svg`);
  fake.media.put(pic, PNG, 'image/png');
  fake.media.put(svg, SVG, 'image/svg+xml');
  await postCallback(w.url, inbound(id, { media: [`${fake.url}${pic}`, `${fake.url}${svg}`] }));
  const [p, s] = await settled(w.url, id);
  const other = { Authorization: `Bearer ${KEYS.other}` };
  const existing = await fetch(`${w.url}${p.url}`, { headers: other });
  const missing = await fetch(`${w.url}/media/${id}/bw/${id}/9/none.png`, { headers: other });
  assert.equal(existing.status, 404);
  assert.equal(missing.status, 404);
  assert.deepEqual(await existing.json(), await missing.json());
  // The operator: the PNG inline, the SVG only as an attachment.
  const png = await fetch(`${w.url}${p.url}`, { headers: API });
  assert.equal(png.status, 200);
  assert.equal(png.headers.get('content-disposition'), null);
  const got = await fetch(`${w.url}${s.url}`, { headers: API });
  assert.equal(got.status, 200);
  assert.match(got.headers.get('content-disposition'), /^attachment; filename="s\.svg"$/);
});

test('erasure reaches a renamed key\'s saved answers, messages with no recipient, and callbacks 26 hours later', async () => {
  const number = '+15553330001';
  // 1. A keyed send to the number, saved by key "web"'s guard.
  assert.equal((await send({ to: [number] }, { headers: { 'Idempotency-Key': uniqueId('idem') } })).status, 202);
  const saved = await guardSql(w.url, 'web', 'SELECT COUNT(*) AS n FROM idempotency WHERE instr(response, ?) > 0', [number.slice(1)]);
  assert.equal(saved[0].n, 1);
  // 2. A message with no recipient (an unknown event type, no `to`).
  const orphan = uniqueId('orphan');
  const time = new Date().toISOString();
  const r = await postCallback(w.url, [{ type: 'message-custom', time, message: { id: orphan, direction: 'in', from: number, text: 'no to', time } }]);
  assert.deepEqual((await r.json()).stored, 1);
  assert.equal((await getJson(w.url, `/messages/${orphan}`)).status, 200);
  const exported = async () => (await (await fetch(`${w.url}/export`, { headers: API })).text());
  assert.ok((await exported()).includes(orphan), 'exported like the others');
  // 3. A listed message, whose late callback comes 26 hours after erasure.
  const late = uniqueId('late');
  const delivered = { type: 'message-delivered', time, to: number, description: 'ok',
    message: { id: late, direction: 'out', from: OUR, to: [number], text: '', time } };
  await postCallback(w.url, [{ ...delivered, type: 'message-sending' }]);

  // The key is renamed away: a new Worker on the same storage knows it as "web2".
  await w.stop();
  const renamed = KEY_ENTRIES.map((k) => (k.id === 'web' ? { ...k, id: 'web2' } : k));
  w = await startWorker({ vars: vars({ CLIENT_KEYS: JSON.stringify(renamed) }), build: 'build-test', persistDir: w.persistDir });
  const result = await erase(w.url, number);
  assert.equal(result.erased, 3, 'the keyed send, the message with no recipient, and the late one');
  assert.equal((await guardSql(w.url, 'web', 'SELECT COUNT(*) AS n FROM idempotency'))[0].n, 0, 'the renamed key\'s answer is gone');
  assert.equal((await getJson(w.url, `/messages/${orphan}`)).status, 404);
  assert.ok(!(await exported()).includes(orphan));

  // 26 hours on (the tombstone's clock moved back), the first delivery receipt arrives.
  await shardSql(w.url, 0, 'UPDATE erased SET erased_ms = erased_ms - ?', [26 * 3_600_000]);
  const again = await postCallback(w.url, [delivered]);
  assert.equal(again.status, 200);
  assert.equal((await again.json()).erased, 1);
  assert.equal((await getJson(w.url, `/messages/${late}`)).status, 404, 'the erased message did not come back');
  // Past ERASURE_TOMBSTONE_DAYS (30), the id is free again: tombstones are pruned by retention.
  await shardSql(w.url, 0, 'UPDATE erased SET erased_ms = erased_ms - ?', [30 * 86_400_000]);
  assert.equal((await fetch(`${w.url}/retention/run`, { method: 'POST', headers: API })).status, 200);
  assert.equal((await shardSql(w.url, 0, 'SELECT COUNT(*) AS n FROM erased WHERE message_id = ?', [late]))[0].n, 0);
});

test('retention purges messages with no recipient, and saved answers of guards whose key is gone', async () => {
  const old = uniqueId('old-orphan');
  const oldTime = new Date(Date.now() - 40 * 86_400_000).toISOString();
  await postCallback(w.url, [{ type: 'message-custom', time: oldTime, message: { id: old, direction: 'in', from: '+15553330002', time: oldTime } }]);
  assert.equal((await getJson(w.url, `/messages/${old}`)).status, 200);
  // A saved answer older than its 24 hours in the guard of key "web",
  // which this Worker's CLIENT_KEYS no longer names.
  await guardSql(w.url, 'web', 'INSERT INTO idempotency (scope_key, body_hash, created_ms, response) VALUES (?, ?, ?, ?)',
    ['web:stale', 'h', Date.now() - 2 * 86_400_000, '{"status":202,"body":"+15553330002"}']);
  const run = await (await fetch(`${w.url}/retention/run`, { method: 'POST', headers: API })).json();
  assert.ok(run.purged >= 1);
  assert.equal((await getJson(w.url, `/messages/${old}`)).status, 404);
  assert.equal((await guardSql(w.url, 'web', 'SELECT COUNT(*) AS n FROM idempotency'))[0].n, 0);
});

test('live: a key holds at most 10 sockets, and a removed key\'s sockets close', async () => {
  const open = (token) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', `token.${token}`]);
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', reject);
  });
  const sockets = [];
  for (let i = 0; i < 10; i++) sockets.push(await open(KEYS.other));
  await assert.rejects(open(KEYS.other), (e) => e.status === 429, 'the 11th socket');
  const operator = await open(SECRETS.API_TOKEN);
  // CLIENT_KEYS without "other": its sockets close; the operator's stays.
  const without = KEY_ENTRIES.filter((k) => k.id !== 'other').map((k) => (k.id === 'web' ? { ...k, id: 'web2' } : k));
  const r = await fetch(`${w.url}/__test/live-keys`, { method: 'POST', headers: API, body: JSON.stringify({ clientKeys: JSON.stringify(without) }) });
  assert.equal(r.status, 200);
  // The server's close frame moves each socket out of OPEN (the client
  // never called close); `ws` keeps the code it received in `_closeCode`
  // (its 'close' event waits for the TCP connection, which wrangler's
  // proxy holds open).
  const deadline = Date.now() + 10_000;
  while (sockets.some((ws) => ws.readyState === WebSocket.OPEN) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.deepEqual(sockets.map((ws) => ws._closeCode), Array(10).fill(4001));
  assert.equal(operator.readyState, WebSocket.OPEN);
  operator.close();
  for (const ws of sockets) ws.terminate();
});

test('the console cannot be framed; five 1 MiB quarantined bodies come back in two pages', async () => {
  const page = await fetch(`${w.url}/`);
  assert.match(page.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');

  const hashes = [];
  for (let i = 0; i < 5; i++) {
    const body = `${i}`.repeat(1024 * 1024 - 64); // not JSON: quarantined byte for byte
    hashes.push(sha256(body));
    assert.equal((await postCallback(w.url, body)).status, 200);
  }
  const count = await (await fetch(`${w.url}/quarantine/count`, { headers: API })).json();
  assert.ok(count.count >= 5);
  const seen = [];
  let pages = 0;
  let token;
  do {
    const r = await fetch(`${w.url}/quarantine?limit=1000${token ? `&pageToken=${encodeURIComponent(token)}` : ''}`, { headers: API });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.ok(text.length <= 4 * 1024 * 1024 + 64 * 1024, `a page is ${text.length} bytes`);
    const j = JSON.parse(text);
    assert.equal(j.totalCount, count.count);
    seen.push(...j.items.map((i) => i.contentHash));
    token = j.nextPageToken;
    pages++;
  } while (token && pages < 10);
  assert.ok(pages >= 2, `${pages} pages`);
  for (const h of hashes) assert.equal(seen.filter((s) => s === h).length, 1, `item ${h} once`);
  const bad = await fetch(`${w.url}/quarantine?pageToken=nope`, { headers: API });
  assert.equal(bad.status, 400);
});
