// What operators read: the OpenAPI document (checked with a real OpenAPI
// validator, and every route's real answers checked against it with a
// real JSON Schema validator), Prometheus metrics equal to a known data
// set, and one structured log line per request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Contract } from '../support/openapi.mjs';
import { startWorker, postCallback, uniqueId, basic, API, SECRETS, sha256, inboundEvent } from './harness.mjs';
import { freePort } from '../support/ports.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const KEY = 'operability-client-key';
const OTHER = 'operability-other-key';
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');

let fake;
let deadPort;
before(async () => {
  fake = await startFakeBandwidth();
  deadPort = await freePort();
});
after(async () => { await fake?.close(); });

const vars = (extra = {}) => ({
  BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app',
  BW_CLIENT_ID: 'ops-client', BW_CLIENT_SECRET: 'ops-client-secret',
  BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
  CLIENT_KEYS: JSON.stringify([
    { id: 'web', key_sha256: sha256(KEY), allowed_from: ['+15551110000'], allowed_origins: ['https://app.example.com'] },
    { id: 'other', key_sha256: sha256(OTHER), allowed_from: ['+15559990000'] },
  ]),
  FORWARD_TARGETS: JSON.stringify([{ id: 'down', url: `http://127.0.0.1:${deadPort}/down`, secret: 'whsec_' + Buffer.from('ops-target-secret').toString('base64') }]),
  FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '200', FORWARD_GIVE_UP_MS: '600',
  MEDIA_RETRY_BASE_MS: '200', RETENTION_DAYS: '30',
  ...extra,
});

function outbound(id, type, { to = '+15552220001', time = new Date().toISOString(), extra = {} } = {}) {
  return [{
    type, time, description: type, to, ...extra,
    message: { id, owner: '+15551110000', applicationId: 'app', time, segmentCount: 1, direction: 'out', to: [to], from: '+15551110000', text: '' },
  }];
}
const inbound = (id, from, { media, time } = {}) => [inboundEvent({ id, from, media, time, description: 'in' })];

const metric = (text, line) => {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  assert.ok(found, `no ${line} in\n${text}`);
  return Number(found.split(' ').at(-1));
};

test('metrics equal a known set of callbacks, exactly, and stay true across an erasure', async () => {
  const w = await startWorker({ vars: vars({ LEDGER_SHARDS: '1' }) });
  try {
    const [m1, m2, m3, m4] = [uniqueId('m1'), uniqueId('m2'), uniqueId('m3'), uniqueId('m4')];
    const failedTime = new Date().toISOString();
    const send = async (body, headers) => assert.equal((await postCallback(w.url, body, headers)).status, 200);
    await send(outbound(m1, 'message-sending'));
    const delivered = outbound(m1, 'message-delivered');
    await send(delivered);
    await send(outbound(m2, 'message-failed', { time: failedTime, extra: { errorCode: 4720 } }));
    await send(inbound(m3, '+15554440003'));
    await send(delivered); // duplicate
    await send(delivered); // duplicate
    // Same identity (id, type, recipient, time, error code), other content: a conflict.
    await send(outbound(m2, 'message-failed', { time: failedTime, extra: { errorCode: 4720, description: 'rewritten' } }));
    await send('not json at all');
    await send('not json at all'); // the same item, seen twice

    const scrape = async () => {
      const r = await fetch(`${w.url}/metrics`, { headers: API });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
      return r.text();
    };
    let text = await scrape();
    assert.equal(metric(text, 'bw_ledger_events_total{result="stored"}'), 4);
    assert.equal(metric(text, 'bw_ledger_events_total{result="duplicate"}'), 2);
    assert.equal(metric(text, 'bw_ledger_events_total{result="conflict"}'), 1);
    assert.equal(metric(text, 'bw_ledger_events_total{result="quarantined"}'), 2);
    assert.equal(metric(text, 'bw_ledger_recipients{status="delivered"}'), 1);
    assert.equal(metric(text, 'bw_ledger_recipients{status="failed"}'), 1);
    assert.equal(metric(text, 'bw_ledger_recipients{status="received"}'), 1);
    assert.equal(metric(text, 'bw_ledger_recipients{status="sending"}'), 0);
    // Four changes forwarded to "down": m1 sending, m1 delivered, m2 failed, m3 received.
    const outbox = ['pending', 'delivered', 'dead'].map((s) => metric(text, `bw_ledger_outbox_items{target="down",state="${s}"}`));
    assert.equal(outbox.reduce((a, b) => a + b, 0), 4);
    assert.equal(metric(text, 'bw_ledger_media_items{status="archived"}'), 0);
    // A second scrape reads the same figures (nothing new to count).
    assert.equal(metric(await scrape(), 'bw_ledger_events_total{result="stored"}'), 4);

    // Erase m3, the newest event: `stored` never goes back, and the next
    // event (whose seq SQLite takes from the freed top) is still counted.
    const erased = await fetch(`${w.url}/erasure`, { method: 'POST', headers: API, body: JSON.stringify({ number: '+15554440003' }) });
    assert.equal((await erased.json()).erased, 1);
    text = await scrape();
    assert.equal(metric(text, 'bw_ledger_events_total{result="stored"}'), 4);
    assert.equal(metric(text, 'bw_ledger_recipients{status="received"}'), 0);
    await send(inbound(m4, '+15554440004'));
    text = await scrape();
    assert.equal(metric(text, 'bw_ledger_events_total{result="stored"}'), 5);
    assert.equal(metric(text, 'bw_ledger_recipients{status="received"}'), 1);

    // Without the token: 401.
    assert.equal((await fetch(`${w.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${w.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 401);

    // One JSON line per request, with the route's template and, for a
    // callback about one message, its id and shard.
    await new Promise((r) => setTimeout(r, 300)); // the log is written by another process
    const lines = readFileSync(w.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const requests = lines.filter((l) => 'durationMs' in l);
    const callbacks = requests.filter((l) => l.route === 'POST /callbacks/bandwidth');
    assert.equal(callbacks.length, 10);
    for (const l of requests) {
      assert.equal(l.level, 'info');
      assert.equal(typeof l.status, 'number');
      assert.ok(Number.isInteger(l.durationMs) && l.durationMs >= 0);
    }
    const one = callbacks.find((l) => l.messageId === m4);
    assert.deepEqual(Object.keys(one).sort(), ['durationMs', 'level', 'messageId', 'route', 'shard', 'status']);
    assert.equal(one.shard, 0);
    assert.equal(one.status, 200);
    assert.equal(requests.filter((l) => l.route === 'GET /metrics' && l.status === 401).length, 2);
    assert.ok(requests.some((l) => l.route === 'POST /erasure' && l.status === 200));
    // Warnings and errors have the same shape, with a message.
    const warnings = readFileSync(w.logFile, 'utf8').match(/\{"level":"(warn|error)"[^\n]*\}/g) ?? [];
    assert.ok(warnings.length >= 1, 'the conflict was logged as a warning');
    for (const text of warnings) {
      const l = JSON.parse(text);
      assert.equal(typeof l.msg, 'string');
    }
    assert.ok(warnings.some((t) => t.includes('event identity conflict')));
  } finally {
    await w.stop();
  }
});

// ---- The OpenAPI document, and every route's real answers against it ----

let doc;
/** The document as a contract (`tests/support/openapi.mjs`). */
let contract;
const checked = (...args) => contract.checked(...args);

test('GET /openapi.json is a valid OpenAPI 3.1 document, served without credentials', async () => {
  const w = await startWorker({ vars: vars() });
  try {
    const r = await fetch(`${w.url}/openapi.json`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/json');
    doc = await r.json();
    assert.equal(doc.openapi, '3.1.0');
    const result = await new Validator().validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 1));
    contract = new Contract(doc);
    // Every component schema compiles.
    for (const schema of Object.values(doc.components.schemas)) contract.compiled(schema);
    await checked('GET', '/openapi.json', r, { body: JSON.stringify(doc) });
  } finally {
    await w.stop();
  }
});

test('every route answers as the OpenAPI document says, errors included', async () => {
  assert.ok(doc, 'the document was read by the test before');
  const w = await startWorker({ vars: vars() });
  const u = (p) => `${w.url}${p}`;
  const call = async (method, path, init = {}) => checked(method, path, await fetch(u(path), { method, ...init }));
  const key = { Authorization: `Bearer ${KEY}` };
  try {
    await call('GET', '/healthz');
    await call('GET', '/');
    // Callbacks.
    const id = uniqueId('oa');
    const picture = `/api/v2/users/${ACCOUNT}/media/${id}/0/p.png`;
    fake.media.put(picture, PNG, 'image/png');
    await call('POST', '/callbacks/bandwidth', { body: '[]' });
    await call('POST', '/callbacks/bandwidth', { headers: { Authorization: basic() }, body: JSON.stringify(inbound(id, '+15554440009', { media: [`${fake.url}${picture}`] })) });
    await call('POST', '/callbacks/bandwidth', { headers: { Authorization: basic() }, body: JSON.stringify(outbound(uniqueId('oa-f'), 'message-failed', { extra: { errorCode: 4720 } })) });
    await call('POST', '/callbacks/bandwidth', { headers: { Authorization: basic() }, body: 'x'.repeat(1024 * 1024 + 1) });
    await call('POST', '/callbacks/bandwidth', { headers: { Authorization: basic() }, body: 'quarantined, not JSON' });
    // The message, once its media is archived.
    let message;
    for (let i = 0; i < 100; i++) {
      message = JSON.parse(await call('GET', `/messages/${id}`, { headers: API }));
      if (message.archivedMedia[0]?.status === 'archived') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(message.archivedMedia[0].status, 'archived');
    await call('GET', `/messages/${id}`);
    await call('GET', '/messages/no-such-message', { headers: API });
    const file = message.archivedMedia[0].url;
    await call('GET', file, { headers: API });
    await call('GET', file);
    await call('GET', file, { headers: { Authorization: `Bearer ${OTHER}` } });
    await call('GET', `${file}.nothing`, { headers: API });
    // Quarantine.
    await call('GET', '/quarantine', { headers: API });
    await call('GET', '/quarantine?limit=0', { headers: API });
    await call('GET', '/quarantine?pageToken=not-a-token', { headers: API });
    await call('GET', '/quarantine');
    await call('GET', '/quarantine/count', { headers: API });
    await call('GET', '/quarantine/count');
    // List Messages and conversations.
    const list = `/api/v2/users/${ACCOUNT}/messages`;
    await call('GET', `${list}?include=content&limit=1`, { headers: API });
    await call('GET', `${list}?limitTotalCount=false`, { headers: key });
    await call('GET', `${list}?noSuchParameter=1`, { headers: API });
    await call('GET', list);
    await call('GET', `/api/v2/users/1234/messages`, { headers: API });
    await call('GET', '/conversations?number=%2B15551110000&with=%2B15554440009', { headers: API });
    await call('GET', '/conversations?number=nope', { headers: API });
    // The send proxy.
    const sendBody = (extra = {}) => JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'hi', ...extra });
    await call('POST', list, { headers: { ...key, 'Content-Type': 'application/json' }, body: sendBody() });
    await call('POST', list, { headers: { ...key, 'Content-Type': 'application/json' }, body: sendBody({ to: [] }) });
    await call('POST', list, { headers: { 'Content-Type': 'application/json' }, body: sendBody() });
    await call('POST', list, { headers: { ...key, 'Content-Type': 'application/json' }, body: sendBody({ from: '+15550000000' }) });
    await call('POST', `/api/v2/users/1234/messages`, { headers: { ...key, 'Content-Type': 'application/json' }, body: sendBody() });
    await call('OPTIONS', list, { headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST' } });
    await call('OPTIONS', list, { headers: { Origin: 'https://evil.example.com', 'Access-Control-Request-Method': 'POST' } });
    // The multi-channel send proxy.
    const multi = `${list}/multiChannel`;
    const mcBody = (extra = {}) => JSON.stringify({ to: '+15552220001', channelList: [{ channel: 'SMS', from: '+15551110000', content: { text: 'hi' } }], ...extra });
    await call('POST', multi, { headers: { ...API, 'Content-Type': 'application/json' }, body: mcBody() });
    await call('POST', multi, { headers: { ...API, 'Content-Type': 'application/json' }, body: mcBody({ channelList: [] }) });
    await call('POST', multi, { headers: { 'Content-Type': 'application/json' }, body: mcBody() });
    await call('OPTIONS', multi, { headers: { Origin: 'https://app.example.com', 'Access-Control-Request-Method': 'POST' } });
    // The live feed: an upgrade, a refusal, and a plain GET.
    const upgraded = await new Promise((resolve, reject) => {
      const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', `token.${SECRETS.API_TOKEN}`]);
      ws.on('upgrade', (res) => { resolve(res.statusCode); ws.close(); });
      ws.on('error', reject);
    });
    await checked('GET', '/live', { status: upgraded, headers: new Headers() }, { body: '' });
    const refused = await new Promise((resolve) => {
      const ws = new WebSocket(`${w.url.replace('http', 'ws')}/live`, ['bw-ledger', 'token.wrong']);
      ws.on('unexpected-response', (_req, res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body: Buffer.concat(chunks).toString() }));
      });
      ws.on('error', () => {});
    });
    await checked('GET', '/live', { status: refused.status, headers: new Headers({ 'content-type': refused.type }) }, { body: refused.body });
    await call('GET', '/live', { headers: API });
    // Forwarding operations: the "down" target's forwards die quickly.
    let dead;
    for (let i = 0; i < 100; i++) {
      dead = JSON.parse(await call('GET', '/outbox/dead', { headers: API }));
      if (dead.items.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(dead.items.length > 0);
    await call('GET', '/outbox', { headers: API });
    await call('GET', '/outbox');
    await call('GET', '/outbox/dead?limit=0', { headers: API });
    await call('POST', '/outbox/replay', { headers: API, body: JSON.stringify({ target: 'down', ids: [dead.items[0].webhookId] }) });
    await call('POST', '/outbox/replay', { headers: API, body: '{"not":"a replay"}' });
    // Webhook targets through the API.
    const json = { ...API, 'Content-Type': 'application/json' };
    const made = JSON.parse(await call('POST', '/targets', { headers: json, body: JSON.stringify({ id: 'oa-api', url: 'http://127.0.0.1:9/oa' }) }));
    w.noteSecret(made.secret);
    await call('POST', '/targets', { headers: json, body: JSON.stringify({ id: 'oa-api', url: 'http://127.0.0.1:9/oa' }) });
    await call('POST', '/targets', { headers: json, body: JSON.stringify({ url: 'ftp://nope' }) });
    await call('POST', '/targets', { headers: key, body: JSON.stringify({ url: 'http://127.0.0.1:9/oa' }) });
    await call('GET', '/targets', { headers: API });
    await call('GET', '/targets/oa-api', { headers: API });
    await call('GET', '/targets/no-such', { headers: API });
    await call('PATCH', '/targets/oa-api', { headers: json, body: JSON.stringify({ events: ['message.status'], ratePerSecond: null }) });
    await call('PATCH', '/targets/down', { headers: json, body: JSON.stringify({ description: 'config' }) });
    const rotated = JSON.parse(await call('POST', '/targets/oa-api/secret/rotate', { headers: API }));
    w.noteSecret(rotated.secret);
    await call('POST', '/targets/oa-api/disable', { headers: API });
    await call('POST', '/targets/oa-api/enable', { headers: API });
    await call('DELETE', '/targets/oa-api', { headers: API });
    await call('DELETE', '/targets/oa-api', { headers: API });
    await call('POST', '/outbox/discard', { headers: json, body: JSON.stringify({ target: 'oa-api' }) });
    await call('POST', '/outbox/discard', { headers: json, body: '{"target": 7}' });
    await call('GET', '/keys', { headers: API });
    await call('GET', '/keys', { headers: key });
    // Lifecycle.
    await call('POST', '/retention/run', { headers: API });
    await call('POST', '/retention/run');
    await call('GET', '/export', { headers: API });
    await call('GET', '/export?format=csv', { headers: API });
    await call('GET', '/export?from=yesterday', { headers: API });
    await call('POST', '/erasure', { headers: API, body: JSON.stringify({ number: '+15554440009' }) });
    await call('POST', '/erasure', { headers: API, body: JSON.stringify({ number: 'not a number' }) });
    // Operators.
    await call('GET', '/metrics', { headers: API });
    await call('GET', '/metrics');
    await call('GET', '/shards', { headers: API });
    await call('GET', '/shards', { headers: key });
    await call('GET', '/stats/outcomes', { headers: API });
    await call('GET', '/stats/outcomes', { headers: key });
    // Opt-outs.
    const optNumber = '+15554440077';
    const enc = encodeURIComponent(optNumber);
    await call('POST', '/optouts', { headers: API, body: JSON.stringify({ number: optNumber, note: 'by phone' }) });
    await call('POST', '/optouts', { headers: API, body: JSON.stringify({ number: optNumber, note: 'again' }) });
    await call('POST', '/optouts', { headers: API, body: JSON.stringify({ number: 'nope' }) });
    await call('POST', list, { headers: { ...key, 'Content-Type': 'application/json' }, body: sendBody({ to: [optNumber] }) });
    await call('GET', '/optouts', { headers: API });
    await call('GET', `/optouts?number=${enc}`, { headers: API });
    await call('GET', '/optouts');
    await call('GET', `/optouts/${enc}/history`, { headers: API });
    await call('DELETE', `/optouts/${enc}`, { headers: API });
    await call('DELETE', `/optouts/${enc}`, { headers: API, body: JSON.stringify({ note: 'web form' }) });
    await call('DELETE', `/optouts/${enc}`, { headers: API, body: JSON.stringify({ note: 'again' }) });

    // Every operation of the document was seen answering successfully.
    const missing = [];
    for (const [template, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item)) {
        const ok = [...contract.covered].some((c) => c.startsWith(`${method.toUpperCase()} ${template} `) && /\s(2\d\d|101)$/.test(c));
        if (!ok) missing.push(`${method.toUpperCase()} ${template}`);
      }
    }
    assert.deepEqual(missing, [], 'operations never seen answering 2xx');
    console.log(`${contract.covered.size} (operation, status) pairs checked against the document`);
  } finally {
    await w.stop();
  }
});
