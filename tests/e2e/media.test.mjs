// The MMS media archive: every media file of an inbound message or a proxied
// send is copied into R2 (wrangler's local R2 here) before Bandwidth deletes
// it, off the ack path, once, with Bandwidth's credentials only on
// Bandwidth's origin. The fake Bandwidth serves media only to a bearer
// token it issued; a second host on another origin records every header.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { startWorker, postCallback, getJson, uniqueId, settled, API, sha256, inboundEvent } from './harness.mjs';
import { startFakeBandwidth, startMediaHost } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
const OUR = '+15551110000';
const THEM = '+15554440001';
const KEYS = { mine: 'media-key-mine', other: 'media-key-other' };
const CLIENT_KEYS = JSON.stringify([
  { id: 'mine', key_sha256: sha256(KEYS.mine), allowed_from: [OUR] },
  { id: 'other', key_sha256: sha256(KEYS.other), allowed_from: ['+15559990000'] },
]);
const SECRET = 'whsec_' + Buffer.from('media-forward-secret-0123456789ab').toString('base64');

// A real 1x1 PNG and a SMIL part, as phones send them.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
const SMIL = Buffer.from('<smil><body><par><img src="pic.png"/></par></body></smil>');

let fake;
let host;
let receiver;
const forwards = [];
let w;

function vars(extra = {}) {
  return {
    BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', CLIENT_KEYS,
    BW_CLIENT_ID: 'media-client', BW_CLIENT_SECRET: 'media-secret',
    BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    FORWARD_TARGETS: JSON.stringify([
      { id: 'media-only', url: `${receiver.url}/media-only`, secret: SECRET, events: ['message.media'] },
      { id: 'status-only', url: `${receiver.url}/status-only`, secret: SECRET, events: ['message.status'] },
    ]),
    FORWARD_RETRY_BASE_MS: '100',
    MEDIA_RETRY_BASE_MS: '200', MEDIA_RETRY_MAX_MS: '800', MEDIA_GIVE_UP_MS: '4000',
    RETENTION_DAYS: '30',
    ...extra,
  };
}

before(async () => {
  fake = await startFakeBandwidth();
  host = await startMediaHost();
  const srv = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let verified = false;
      try {
        new Webhook(SECRET).verify(body, {
          'webhook-id': req.headers['webhook-id'],
          'webhook-timestamp': req.headers['webhook-timestamp'],
          'webhook-signature': req.headers['webhook-signature'],
        });
        verified = true;
      } catch { /* recorded as unverified */ }
      forwards.push({ target: req.url.slice(1), body: JSON.parse(body), verified });
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  receiver = { srv, url: `http://127.0.0.1:${srv.address().port}` };
  w = await startWorker({ vars: vars(), build: 'build-test' });
});

after(async () => {
  await w?.stop();
  await host?.close();
  await fake?.close();
  receiver?.srv.closeAllConnections?.();
  await new Promise((r) => receiver?.srv.close(r));
});

const bwPath = (name) => `/api/v2/users/${ACCOUNT}/media/${name}`;

const inbound = (id, media, { text = 'look', time } = {}) => [inboundEvent({ id, media, text, time, from: THEM, to: OUR })];

async function r2Keys(url, prefix) {
  const r = await fetch(`${url}/__test/r2-keys`, { method: 'POST', headers: API, body: JSON.stringify({ prefix }) });
  assert.equal(r.status, 200);
  return (await r.json()).keys;
}

const get = (url, path, headers = API) => fetch(`${url}${path}`, { headers });

test('a PNG and a .smil part are archived byte for byte, and served after Bandwidth deleted them', async () => {
  const id = uniqueId('mms');
  const png = bwPath(`${id}/0/pic.png`);
  const smil = bwPath(`${id}/1/part.smil`);
  fake.media.put(png, PNG, 'image/png');
  fake.media.put(smil, SMIL, 'application/smil');
  const r = await postCallback(w.url, inbound(id, [`${fake.url}${png}`, `${fake.url}${smil}`]));
  assert.equal(r.status, 200);

  const media = await settled(w.url, id);
  assert.deepEqual(media, [
    { url: `/media/${id}/bw/${id}/0/pic.png`, contentType: 'image/png', size: PNG.length, sha256: sha256(PNG),
      status: 'archived', sourceUrl: `${fake.url}${png}` },
    { url: `/media/${id}/bw/${id}/1/part.smil`, contentType: 'application/smil', size: SMIL.length, sha256: sha256(SMIL),
      status: 'archived', sourceUrl: `${fake.url}${smil}` },
  ]);
  // Bandwidth-shaped answers keep Bandwidth's URLs.
  const msg = await getJson(w.url, `/messages/${id}`);
  assert.deepEqual(msg.json.media, [`${fake.url}${png}`, `${fake.url}${smil}`]);
  // Fetched with the OAuth token the fake issued.
  for (const p of [png, smil]) {
    const seen = fake.media.requestsFor(p);
    assert.equal(seen.length, 1);
    assert.match(seen[0].headers.authorization, /^Bearer tok-\d+$/);
  }
  assert.deepEqual((await r2Keys(w.url, `${id}/`)).sort(), [`${id}/bw/${id}/0/pic.png`, `${id}/bw/${id}/1/part.smil`]);

  fake.media.delete(png);
  fake.media.delete(smil);
  for (const [m, bytes, type] of [[media[0], PNG, 'image/png'], [media[1], SMIL, 'application/smil']]) {
    const got = await get(w.url, m.url);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), type);
    assert.equal(got.headers.get('x-content-type-options'), 'nosniff');
    assert.match(got.headers.get('content-security-policy'), /sandbox/);
    assert.deepEqual(Buffer.from(await got.arrayBuffer()), bytes);
  }

  // One message.media forward, to the target that asked for it only.
  const deadline = Date.now() + 10_000;
  while (!forwards.some((f) => f.body.messageId === id) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 100));
  }
  const mine = forwards.filter((f) => f.body.messageId === id);
  assert.equal(mine.length, 1, JSON.stringify(mine));
  assert.equal(mine[0].target, 'media-only');
  assert.equal(mine[0].verified, true);
  assert.equal(mine[0].body.type, 'message.media');
  assert.deepEqual(mine[0].body.archivedMedia.map((m) => [m.url, m.status, m.sha256]).sort(),
    media.map((m) => [m.url, m.status, m.sha256]).sort());
});

test('reads: 401 without credentials, 404 for a key outside the numbers, 200 for a key that holds one', async () => {
  const id = uniqueId('mms-auth');
  const png = bwPath(`${id}/0/a.png`);
  fake.media.put(png, PNG, 'image/png');
  await postCallback(w.url, inbound(id, [`${fake.url}${png}`]));
  const [m] = await settled(w.url, id);
  assert.equal((await get(w.url, m.url, {})).status, 401);
  assert.equal((await get(w.url, m.url, { Authorization: 'Bearer not-a-key' })).status, 401);
  const other = await get(w.url, m.url, { Authorization: `Bearer ${KEYS.other}` });
  assert.equal(other.status, 404, 'the same answer as a missing file');
  assert.equal((await other.json()).type, 'not-found');
  const mine = await get(w.url, m.url, { Authorization: `Bearer ${KEYS.mine}` });
  assert.equal(mine.status, 200);
  assert.deepEqual(Buffer.from(await mine.arrayBuffer()), PNG);
  const unknown = await get(w.url, `/media/${id}/bw/${id}/9/nothing.png`);
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).type, 'not-found');
  assert.equal((await get(w.url, `/media/no-such-message/bw/x.png`)).status, 404);
});

test('a URL on another origin, or a redirect to one, never receives the Authorization header', async () => {
  const id = uniqueId('mms-ext');
  host.media.put(`/pics/${id}.jpg`, PNG, 'image/jpeg');
  host.media.put(`/moved/${id}.png`, PNG, 'image/png');
  // Bandwidth's URL redirects to the other host.
  const redirected = bwPath(`${id}/0/moved.png`);
  fake.media.failures.set(redirected, [{ status: 302, location: `${host.url}/moved/${id}.png` }]);
  await postCallback(w.url, inbound(id, [`${host.url}/pics/${id}.jpg`, `${fake.url}${redirected}`]));
  const media = await settled(w.url, id);
  assert.deepEqual(media.map((m) => m.status), ['archived', 'archived']);
  assert.equal(media[0].url, `/media/${id}/ext/127.0.0.1_${new URL(host.url).port}/pics/${id}.jpg`);
  assert.equal(media[0].contentType, 'image/jpeg');
  for (const p of [`/pics/${id}.jpg`, `/moved/${id}.png`]) {
    const seen = host.media.requestsFor(p);
    assert.equal(seen.length, 1);
    assert.equal(seen[0].headers.authorization, undefined, `credentials leaked to ${p}`);
  }
  // The first hop, on Bandwidth's origin, carried them.
  assert.match(fake.media.requestsFor(redirected)[0].headers.authorization, /^Bearer /);
});

test('a server that fails twice then succeeds ends archived; one that always fails ends failed when the window closes', async () => {
  const id = uniqueId('mms-retry');
  const flaky = `/flaky/${id}.png`;
  const down = `/down/${id}.png`;
  host.media.put(flaky, PNG, 'image/png');
  host.media.failures.set(flaky, [{ status: 503 }, { status: 500 }]);
  host.media.failures.set(down, Array.from({ length: 1000 }, () => ({ status: 503 })));
  await postCallback(w.url, inbound(id, [`${host.url}${flaky}`, `${host.url}${down}`]));
  const media = await settled(w.url, id);
  assert.equal(media[0].status, 'archived');
  assert.equal(media[0].sha256, sha256(PNG));
  assert.equal(host.media.requestsFor(flaky).length, 3);
  assert.equal(media[1].status, 'failed');
  assert.equal(media[1].error, 'answered 503');
  assert.ok(host.media.requestsFor(down).length >= 3, 'retried with backoff before giving up');
  assert.equal((await get(w.url, media[1].url)).status, 404);
});

test('a file over 5 MiB is marked failed, not truncated', async () => {
  const id = uniqueId('mms-big');
  host.media.put(`/big/${id}.mp4`, Buffer.alloc(5 * 1024 * 1024 + 1, 7), 'video/mp4');
  await postCallback(w.url, inbound(id, [`${host.url}/big/${id}.mp4`]));
  const [m] = await settled(w.url, id);
  assert.equal(m.status, 'failed');
  assert.match(m.error, /larger than 5242880 bytes/);
  assert.equal(host.media.requestsFor(`/big/${id}.mp4`).length, 1, 'too large is final');
  assert.deepEqual(await r2Keys(w.url, `${id}/`), []);
});

test('five retries of the same callback, and a replay later, fetch each file once', async () => {
  const id = uniqueId('mms-dup');
  const png = bwPath(`${id}/0/a.png`);
  fake.media.put(png, PNG, 'image/png');
  host.media.put(`/dup/${id}.png`, PNG, 'image/png');
  const body = inbound(id, [`${fake.url}${png}`, `${host.url}/dup/${id}.png`]);
  const answers = await Promise.all(Array.from({ length: 5 }, () => postCallback(w.url, body)));
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200]);
  await settled(w.url, id);
  assert.equal((await postCallback(w.url, body)).status, 200);
  await new Promise((res) => setTimeout(res, 1000)); // room for a wrong second fetch
  assert.equal(fake.media.requestsFor(png).length, 1);
  assert.equal(host.media.requestsFor(`/dup/${id}.png`).length, 1);
});

test('a send through the proxy with media archives it, fetched without credentials', async () => {
  const id = uniqueId('sent');
  const path = `/uploads/${id}.png`;
  host.media.put(path, PNG, 'image/png');
  fake.nextIds.push(id);
  const r = await fetch(`${w.url}/api/v2/users/${ACCOUNT}/messages`, {
    method: 'POST', headers: { Authorization: `Bearer ${KEYS.mine}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ to: ['+15552220001'], from: OUR, text: 'pic', media: [`${host.url}${path}`] }),
  });
  assert.equal(r.status, 202);
  const [m] = await settled(w.url, id);
  assert.equal(m.status, 'archived');
  assert.equal(m.url, `/media/${id}/ext/127.0.0.1_${new URL(host.url).port}/uploads/${id}.png`);
  assert.equal(host.media.requestsFor(path)[0].headers.authorization, undefined);
  const got = await get(w.url, m.url, { Authorization: `Bearer ${KEYS.mine}` });
  assert.deepEqual(Buffer.from(await got.arrayBuffer()), PNG);
});

test('erasing a number deletes its archived files from R2', async () => {
  const id = uniqueId('mms-erase');
  const number = '+15554449999';
  host.media.put(`/erase/${id}.png`, PNG, 'image/png');
  const body = inbound(id, [`${host.url}/erase/${id}.png`]);
  body[0].message.from = number;
  await postCallback(w.url, body);
  const [m] = await settled(w.url, id);
  assert.equal(m.status, 'archived');
  assert.equal((await r2Keys(w.url, `${id}/`)).length, 1);
  const erased = await fetch(`${w.url}/erasure`, { method: 'POST', headers: API, body: JSON.stringify({ number }) });
  assert.equal((await erased.json()).erased, 1);
  assert.deepEqual(await r2Keys(w.url, `${id}/`), []);
  assert.equal((await get(w.url, m.url)).status, 404);
});

test('export shows the archive; retention deletes a message\'s files from R2 with it', async () => {
  const old = uniqueId('mms-old');
  const young = uniqueId('mms-young');
  const oldTime = new Date(Date.now() - 40 * 86_400_000).toISOString();
  host.media.put(`/old/${old}.png`, PNG, 'image/png');
  host.media.put(`/young/${young}.png`, PNG, 'image/png');
  await postCallback(w.url, inbound(old, [`${host.url}/old/${old}.png`], { time: oldTime }));
  await postCallback(w.url, inbound(young, [`${host.url}/young/${young}.png`]));
  await settled(w.url, old);
  const [y] = await settled(w.url, young);

  const from = new Date(Date.parse(oldTime) - 1000).toISOString();
  const exported = await get(w.url, `/export?from=${from}&to=${new Date(Date.parse(oldTime) + 1000).toISOString()}`);
  const lines = (await exported.text()).trim().split('\n').map((l) => JSON.parse(l));
  const line = lines.find((l) => l.messageId === old);
  assert.equal(line.archivedMedia[0].status, 'archived');
  assert.equal(line.archivedMedia[0].sha256, sha256(PNG));

  assert.equal((await r2Keys(w.url, `${old}/`)).length, 1);
  const run = await fetch(`${w.url}/retention/run`, { method: 'POST', headers: API });
  assert.ok((await run.json()).purged >= 1);
  assert.deepEqual(await r2Keys(w.url, `${old}/`), []);
  assert.equal((await r2Keys(w.url, `${young}/`)).length, 1);
  assert.equal((await get(w.url, y.url)).status, 200);
});

test('a restart between the callback and the fetch still archives', async () => {
  const restartable = await startWorker({ vars: vars({ MEDIA_GIVE_UP_MS: '600000' }), build: 'build-test' });
  const id = uniqueId('mms-restart');
  const path = `/restart/${id}.png`;
  host.media.put(path, PNG, 'image/png');
  // The first fetch hangs: the Worker is killed while it is in flight.
  host.media.failures.set(path, [{ hang: true }]);
  assert.equal((await postCallback(restartable.url, inbound(id, [`${host.url}${path}`]))).status, 200);
  const deadline = Date.now() + 10_000;
  while (host.media.requestsFor(path).length === 0 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(host.media.requestsFor(path).length, 1);
  await restartable.kill();
  const again = await startWorker({ vars: vars({ MEDIA_GIVE_UP_MS: '600000' }), build: 'build-test', persistDir: restartable.persistDir });
  try {
    // Reading the message wakes its shard: the new instance ends the dead
    // attempt's lease at once and tries again (without a read, its alarm
    // would, when the lease ran out).
    const [m] = await settled(again.url, id);
    assert.equal(m.status, 'archived');
    assert.equal(m.sha256, sha256(PNG));
    assert.equal(host.media.requestsFor(path).length, 2);
  } finally {
    await again.stop();
  }
});
