// The send proxy against a local fake Bandwidth, under workerd.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, getJson, statusEvent, uniqueId, sha256 } from './harness.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';
import { Configuration, MessagesApi } from 'bandwidth-sdk';

const ACCOUNT = '9900000';
const KEYS = {
  web: 'web-client-key-1',
  ops: 'ops-client-key-2',
};
const CLIENT_KEYS = JSON.stringify([
  { id: 'web', key_sha256: sha256(KEYS.web), allowed_from: ['+15551110000'], allowed_origins: ['https://app.example.com'] },
  { id: 'ops', key_sha256: sha256(KEYS.ops), allowed_from: ['+15551110001', 'ACME'], allowed_origins: ['https://ops.example.com'], allowed_applications: ['app-sdk'] },
]);

let w;
let fake;

export function sendVars(fakeUrl, extra = {}) {
  return {
    BW_ACCOUNT_ID: ACCOUNT,
    BW_APPLICATION_ID: 'app-default',
    BANDWIDTH_API_BASE: `${fakeUrl}/api/v2`,
    BANDWIDTH_TOKEN_URL: `${fakeUrl}/api/v1/oauth2/token`,
    BW_CLIENT_ID: 'client-id',
    BW_CLIENT_SECRET: 'client-secret',
    CLIENT_KEYS,
    UPSTREAM_TIMEOUT_MS: '1000',
    ...extra,
  };
}

before(async () => {
  fake = await startFakeBandwidth();
  w = await startWorker({ vars: sendVars(fake.url) });
});
after(async () => { await w?.stop(); await fake?.close(); });
beforeEach(() => { fake.script = []; fake.nextIds = []; });

function send(body, { key = KEYS.web, headers = {}, account = ACCOUNT } = {}) {
  return fetch(`${w.url}/api/v2/users/${account}/messages`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
const sms = (extra = {}) => ({ to: ['+15552220001'], from: '+15551110000', text: 'Hello from the proxy', ...extra });

test('a send is forwarded exactly: path, OAuth bearer, body with applicationId filled', async () => {
  const before = fake.messageRequests.length;
  const r = await send(sms({ tag: 'order-1', priority: 'high', ignored: 'x' }));
  assert.equal(r.status, 202);
  const message = await r.json();
  assert.equal(message.text, 'Hello from the proxy');
  const up = fake.messageRequests.at(-1);
  assert.equal(fake.messageRequests.length, before + 1);
  assert.equal(up.path, `/api/v2/users/${ACCOUNT}/messages`);
  assert.match(up.headers.authorization, /^Bearer tok-\d+$/);
  assert.equal(up.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(up.body), {
    applicationId: 'app-default', to: ['+15552220001'], from: '+15551110000',
    text: 'Hello from the proxy', tag: 'order-1', priority: 'high',
  });
  // The token request itself: client credentials, form-encoded, Basic client id:secret.
  const tok = fake.tokenRequests[0];
  assert.equal(tok.headers.authorization, 'Basic ' + Buffer.from('client-id:client-secret').toString('base64'));
  assert.equal(tok.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.equal(tok.body, 'grant_type=client_credentials');
});

test('N sends cost one token request, from a cold start (no token anywhere)', async () => {
  // A fresh runtime and a fresh upstream: no isolate and no broker holds a
  // token, so all 10 concurrent sends reach the broker's single refresh.
  const coldFake = await startFakeBandwidth();
  const cold = await startWorker({ vars: sendVars(coldFake.url) });
  try {
    coldFake.tokenDelayMs = 300; // callers arriving during the refresh must wait for it, not start their own
    const sendCold = () => fetch(`${cold.url}/api/v2/users/${ACCOUNT}/messages`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEYS.web}` }, body: JSON.stringify(sms()),
    });
    const replies = await Promise.all(Array.from({ length: 10 }, sendCold));
    assert.deepEqual(replies.map((r) => r.status), Array(10).fill(202));
    assert.equal(coldFake.messageRequests.length, 10);
    assert.equal(coldFake.tokenRequests.length, 1, 'ten concurrent sends, one token request');
    for (let i = 0; i < 5; i++) assert.equal((await sendCold()).status, 202);
    assert.equal(coldFake.tokenRequests.length, 1, 'one token for every send so far');
  } finally {
    await cold.stop();
    await coldFake.close();
  }
});

test('the accepted message is in the ledger with its text, and callbacks attach after it', async () => {
  const r = await send(sms({ text: 'Your order shipped' }));
  const { id } = await r.json();
  const before = await getJson(w.url, `/messages/${encodeURIComponent(id)}`);
  assert.equal(before.status, 200);
  assert.equal(before.json.text, 'Your order shipped');
  assert.deepEqual(before.json.recipients.map((x) => [x.number, x.status]), [['+15552220001', 'accepted']]);
  assert.equal((await postCallback(w.url, [statusEvent(id, { time: new Date(Date.now() + 1000).toISOString() })])).status, 200);
  const after = await getJson(w.url, `/messages/${encodeURIComponent(id)}`);
  assert.equal(after.json.text, 'Your order shipped');
  assert.equal(after.json.recipients[0].status, 'delivered');
  assert.deepEqual(after.json.timeline.map((t) => t.type), ['message-accepted', 'message-delivered']);
});

test('a callback that arrives before the send is recorded loses nothing either', async () => {
  const id = uniqueId('early');
  assert.equal((await postCallback(w.url, [statusEvent(id, { time: '2099-01-01T00:00:00Z' })])).status, 200);
  fake.nextIds.push(id);
  const r = await send(sms({ text: 'Raced the callback' }));
  assert.equal(r.status, 202);
  assert.equal((await r.json()).id, id);
  const m = await getJson(w.url, `/messages/${encodeURIComponent(id)}`);
  assert.equal(m.json.text, 'Raced the callback');
  assert.equal(m.json.recipients[0].status, 'delivered');
  assert.equal(m.json.timeline.length, 2);
});

test('upstream 400, 429 with Retry-After, and 500 pass through faithfully', async () => {
  const cases = [
    { status: 400, body: { type: 'request-validation', description: 'bad', fieldErrors: [{ fieldName: 'to', description: 'nope' }] } },
    { status: 429, body: { type: 'rate-limit', description: 'slow down' }, headers: { 'Retry-After': '7' } },
    { status: 500, body: { type: 'internal', description: 'oops' } },
  ];
  for (const c of cases) {
    fake.script.push(c);
    const r = await send(sms());
    assert.equal(r.status, c.status);
    assert.deepEqual(await r.json(), c.body);
    assert.equal(r.headers.get('retry-after'), c.headers?.['Retry-After'] ?? null);
  }
});

test('a timeout answers 504 and a dropped connection 502, each as JSON', async () => {
  fake.script.push({ delayMs: 3000 });
  const r = await send(sms());
  assert.equal(r.status, 504);
  assert.equal((await r.json()).type, 'upstream-timeout');
  // The Worker gave up (UPSTREAM_TIMEOUT_MS, 1 s) before Bandwidth answered.
  assert.equal(fake.messageRequests.at(-1).answered, false, 'the 504 came while the upstream was still silent');
  fake.script.push({ destroy: true });
  const d = await send(sms());
  assert.equal(d.status, 502);
  assert.equal((await d.json()).type, 'upstream-unreachable');
});

test('every validation rule answers 400 request-validation, and nothing goes upstream', async () => {
  const before = fake.messageRequests.length;
  const bad = [
    [{ ...sms(), from: 'not a number!' }, 'from'],
    [{ ...sms(), from: 'TooLongSender' }, 'from'],
    [{ ...sms(), from: '12345' }, 'from'],
    [{ ...sms(), to: [] }, 'to'],
    [{ ...sms(), to: Array.from({ length: 11 }, (_, i) => `+1555222${String(i).padStart(4, '0')}`) }, 'to'],
    [{ ...sms(), to: ['+15552220001', '+15552220001'] }, 'to[1]'],
    [{ ...sms(), to: ['5552220001'] }, 'to[0]'],
    [{ ...sms(), text: undefined }, 'text'],
    [{ ...sms(), text: 'x'.repeat(2049) }, 'text'],
    [{ ...sms(), media: ['https://example.com/' + 'a'.repeat(4096)] }, 'media[0]'],
    [{ ...sms(), tag: 't'.repeat(1025) }, 'tag'],
    [{ ...sms(), priority: 'urgent' }, 'priority'],
    [{ ...sms(), expiration: '2020-01-01T00:00:00Z' }, 'expiration'],
    [{ ...sms(), expiration: 'next tuesday' }, 'expiration'],
  ];
  for (const [body, field] of bad) {
    const r = await send(body);
    assert.equal(r.status, 400, field);
    const j = await r.json();
    assert.equal(j.type, 'request-validation');
    assert.ok(j.description);
    assert.ok(j.fieldErrors.some((e) => e.fieldName === field && e.description), `${field}: ${JSON.stringify(j.fieldErrors)}`);
  }
  const notJson = await send('{nope');
  assert.equal(notJson.status, 400);
  assert.equal(fake.messageRequests.length, before);
  // Valid edge values pass: alphanumeric sender, media only, future expiration.
  const ok = await send({ to: ['+15552220001'], from: 'ACME', media: ['https://example.com/a.png'], expiration: new Date(Date.now() + 3600e3).toISOString() }, { key: KEYS.ops });
  assert.equal(ok.status, 202);
});

test('callers: no key is 401, a key sends only from its numbers (403), wrong account is 404', async () => {
  const before = fake.messageRequests.length;
  const none = await send(sms(), { key: null });
  assert.equal(none.status, 401);
  assert.equal((await none.json()).type, 'unauthorized');
  assert.equal((await send(sms(), { key: 'not-a-key' })).status, 401);
  const scoped = await send(sms({ from: '+15551110001' }));
  assert.equal(scoped.status, 403);
  const j = await scoped.json();
  assert.equal(j.type, 'forbidden');
  assert.match(j.description, /\+15551110001/);
  const acct = await send(sms(), { account: '1234567' });
  assert.equal(acct.status, 404);
  assert.equal((await acct.json()).type, 'not-found');
  assert.equal(fake.messageRequests.length, before, 'nothing was sent');
  // Basic with the key as password works too, for SDKs configured with username/password.
  const basic = await send(sms({ from: '+15551110001' }), { key: null, headers: { Authorization: 'Basic ' + Buffer.from(`ops:${KEYS.ops}`).toString('base64') } });
  assert.equal(basic.status, 202);
});

test('CORS: preflight for allowed origins only, never a wildcard; origin scoped per key', async () => {
  const pre = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, idempotency-key, content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
  const allowHeaders = pre.headers.get('access-control-allow-headers').toLowerCase();
  for (const h of ['authorization', 'idempotency-key', 'content-type']) assert.ok(allowHeaders.includes(h), h);
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);

  const refused = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example.com' } });
  assert.equal(refused.status, 403);
  assert.equal(refused.headers.get('access-control-allow-origin'), null);

  const ok = await send(sms(), { headers: { Origin: 'https://app.example.com' } });
  assert.equal(ok.status, 202);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example.com');
  // An origin allowed for another key is refused for this one.
  const other = await send(sms(), { headers: { Origin: 'https://ops.example.com' } });
  assert.equal(other.status, 403);
  const err = await send({ ...sms(), from: 'bad!' }, { headers: { Origin: 'https://app.example.com' } });
  assert.equal(err.status, 400);
  assert.equal(err.headers.get('access-control-allow-origin'), 'https://app.example.com', 'browsers can read errors');
});

test('Idempotency-Key: 20 concurrent duplicates make one upstream call and get the same answer', async () => {
  const before = fake.messageRequests.length;
  fake.script.push({ delayMs: 300 });
  const key = uniqueId('idem');
  const body = sms({ text: 'exactly once please' });
  const replies = await Promise.all(Array.from({ length: 20 }, () => send(body, { headers: { 'Idempotency-Key': key } })));
  const bodies = await Promise.all(replies.map((r) => r.json()));
  assert.deepEqual(replies.map((r) => r.status), Array(20).fill(202));
  assert.equal(new Set(bodies.map((b) => b.id)).size, 1);
  assert.equal(fake.messageRequests.length, before + 1);
  // Later, the same key and body replays; another body is 422.
  const again = await send(body, { headers: { 'Idempotency-Key': key } });
  assert.equal(again.status, 202);
  assert.equal((await again.json()).id, bodies[0].id);
  const changed = await send(sms({ text: 'something else' }), { headers: { 'Idempotency-Key': key } });
  assert.equal(changed.status, 422);
  assert.equal((await changed.json()).type, 'idempotency-key-reused');
  assert.equal(fake.messageRequests.length, before + 1);
  // The same key from another client is a different key.
  const otherClient = await send(sms({ from: '+15551110001', text: 'exactly once please' }), { key: KEYS.ops, headers: { 'Idempotency-Key': key } });
  assert.equal(otherClient.status, 202);
});

test('Idempotency-Key: a rejected send (429) releases the key; a timeout keeps it', async () => {
  const key = uniqueId('idem429');
  fake.script.push({ status: 429, body: { type: 'rate-limit' }, headers: { 'Retry-After': '1' } });
  assert.equal((await send(sms(), { headers: { 'Idempotency-Key': key } })).status, 429);
  const retry = await send(sms(), { headers: { 'Idempotency-Key': key } });
  assert.equal(retry.status, 202, 'Bandwidth did not take it, so a retry may send');

  const key2 = uniqueId('idem504');
  const before = fake.messageRequests.length;
  fake.script.push({ delayMs: 3000 });
  assert.equal((await send(sms(), { headers: { 'Idempotency-Key': key2 } })).status, 504);
  const again = await send(sms(), { headers: { 'Idempotency-Key': key2 } });
  assert.equal(again.status, 504, 'it may have been sent: never send again under this key');
  assert.equal(fake.messageRequests.length, before + 1);
});

test("Bandwidth's own Node SDK works by changing only its base path", async () => {
  const config = new Configuration({ username: 'ops', password: KEYS.ops, basePath: `${w.url}/api/v2` });
  const api = new MessagesApi(config);
  const { status, data } = await api.createMessage(ACCOUNT, {
    applicationId: 'app-sdk', to: ['+15552220009'], from: '+15551110001', text: 'via the SDK',
  });
  assert.equal(status, 202);
  assert.equal(data.text, 'via the SDK');
  const up = JSON.parse(fake.messageRequests.at(-1).body);
  assert.equal(up.applicationId, 'app-sdk');
  assert.deepEqual(up.to, ['+15552220009']);
});
