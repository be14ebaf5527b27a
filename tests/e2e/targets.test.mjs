// Webhook targets managed through the API: made, listed, rotated, filtered,
// paced, paused and deleted with no redeploy, and kept across a restart.
// Deliveries go to a local receiver and are checked with the independent
// `standardwebhooks` verifier.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startReceiver, verifies, whsec } from '../support/receiver.mjs';
import { startWorker, postCallback, getJson, uniqueId, statusEvent, inboundEvent, API, waitFor, sha256, shardSql } from './harness.mjs';

const KEY = 'targets-client-key';
const OVERLAP_MS = 4000;
const SEALING_KEY = Buffer.alloc(32, 7).toString('base64');
let receiver;
let w;
/** api-rot's secret after its rotation. */
let rotSecret;
const vars = () => ({
  FORWARD_TARGETS: JSON.stringify([{ id: 'cfg', url: `${receiver.url}/cfg`, secret: whsec('cfg'), events: ['message.status'] }]),
  FORWARD_RETRY_BASE_MS: '100', FORWARD_RETRY_MAX_MS: '400', FORWARD_GIVE_UP_MS: '600000',
  FORWARD_ROTATION_OVERLAP_MS: String(OVERLAP_MS),
  TARGET_SECRETS_KEY: SEALING_KEY,
  CLIENT_KEYS: JSON.stringify([{ id: 'browser', key_sha256: sha256(KEY), allowed_from: ['+15551110000'] }]),
});

before(async () => {
  receiver = await startReceiver();
  w = await startWorker({ vars: vars(), build: 'build-test' });
});
after(async () => { await w?.stop(); receiver?.close(); });

const call = (method, path, body, headers = API) =>
  fetch(`${w.url}${path}`, { method, headers: { ...headers, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

/** Makes a target; its secret goes into the log check's list. */
async function make(body) {
  const res = await call('POST', '/targets', body);
  const json = await res.json();
  assert.equal(res.status, 201, JSON.stringify(json));
  w.noteSecret(json.secret);
  return json;
}

const seenBy = (target, messageId) => receiver.seen.filter((r) => r.target === target && r.messageId === messageId);
const inbound = (text) => {
  const id = uniqueId('tgt');
  return { id, event: inboundEvent({ id, text, media: [] }) };
};
const settle = (ms) => new Promise((r) => setTimeout(r, ms));

test('a target made through the API gets the next message, signed with the secret answered once', async () => {
  const made = await make({ id: 'api-main', url: `${receiver.url}/api-main`, description: 'the CRM' });
  assert.match(made.secret, /^whsec_/);
  assert.equal(Buffer.from(made.secret.slice(6), 'base64').length, 32, '32 random bytes');
  assert.equal(made.source, 'api');
  assert.equal(made.state, 'active');
  assert.equal(made.description, 'the CRM');

  const listed = await getJson(w.url, '/targets');
  assert.equal(listed.status, 200);
  assert.ok(!listed.text.includes(made.secret.slice(6)) && !/whsec_|"secret"/.test(listed.text), 'no secret is listed');
  const byId = Object.fromEntries(listed.json.targets.map((t) => [t.id, t]));
  assert.equal(byId.cfg.source, 'config');
  assert.equal(byId['api-main'].source, 'api');
  const one = await getJson(w.url, '/targets/api-main');
  assert.equal(one.status, 200);
  assert.ok(!one.text.includes('whsec_'));
  assert.equal((await getJson(w.url, '/targets/no-such')).status, 404);

  const m = inbound('to the API target');
  assert.equal((await postCallback(w.url, [m.event])).status, 200);
  const got = await waitFor(() => seenBy('api-main', m.id).length > 0 && seenBy('api-main', m.id), 10_000);
  assert.ok(got, 'delivered within seconds');
  assert.equal(verifies(made.secret, got[0].raw, got[0].headers), true, 'standardwebhooks accepts the signature');
  assert.equal(got[0].body.text, 'to the API target');

  // The secret is sealed at rest on the shard that holds the target.
  const held = await shardSql(w.url, 0, 'SELECT snapshot FROM api_targets');
  const stored = JSON.stringify(held);
  assert.ok(stored.includes('api-main') && stored.includes('aes256gcm:'), 'sealed');
  assert.ok(!stored.includes(made.secret.slice(6)), 'never in the clear');

  const metrics = await (await fetch(`${w.url}/metrics`, { headers: API })).text();
  assert.ok(metrics.includes('target="api-main"'), 'metrics label the API target');
});

test('a client key, or no token, gets 401 on every targets route; a config target gets 409 but for enable/disable', async () => {
  const routes = [
    ['GET', '/targets'], ['POST', '/targets', { url: `${receiver.url}/x` }], ['GET', '/targets/api-main'],
    ['PATCH', '/targets/api-main', { description: 'x' }], ['DELETE', '/targets/api-main'],
    ['POST', '/targets/api-main/secret/rotate'], ['POST', '/targets/api-main/enable'], ['POST', '/targets/api-main/disable'],
    ['POST', '/outbox/discard', { target: 'api-main' }],
  ];
  for (const [method, path, body] of routes) {
    for (const headers of [{ Authorization: `Bearer ${KEY}` }, {}]) {
      const res = await call(method, path, body, headers);
      assert.equal(res.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
    }
  }
  for (const [method, path, body] of [
    ['POST', '/targets', { id: 'cfg', url: `${receiver.url}/cfg` }], ['PATCH', '/targets/cfg', { url: `${receiver.url}/y` }],
    ['DELETE', '/targets/cfg'], ['POST', '/targets/cfg/secret/rotate'],
  ]) {
    const res = await call(method, path, body);
    const json = await res.json();
    assert.equal(res.status, 409, `${method} ${path}`);
    assert.match(json.description, /FORWARD_TARGETS/);
  }
  // Its state is not its configuration: an operator may disable and enable it.
  for (const [action, state] of [['disable', 'disabled'], ['enable', 'active']]) {
    const res = await call('POST', `/targets/cfg/${action}`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).state, state);
  }
  const dup = await call('POST', '/targets', { id: 'api-main', url: `${receiver.url}/again` });
  assert.equal(dup.status, 409);
  for (const bad of [{}, { url: 'ftp://x' }, { url: `${receiver.url}/z`, event: ['message.status'] }, { url: `${receiver.url}/z`, ratePerSecond: 0 }]) {
    assert.equal((await call('POST', '/targets', bad)).status, 400, JSON.stringify(bad));
  }
});

test('a rotated secret: both sign during the overlap, the new one alone after it', async () => {
  const before = await getJson(w.url, '/targets/api-main');
  const made = await make({ id: 'api-rot', url: `${receiver.url}/api-rot` });
  const rotated = await call('POST', '/targets/api-rot/secret/rotate');
  assert.equal(rotated.status, 200);
  const { secret: fresh, previousSecretExpiresAt } = await rotated.json();
  w.noteSecret(fresh);
  rotSecret = fresh;
  assert.notEqual(fresh, made.secret);
  assert.ok(previousSecretExpiresAt, 'the overlap is shown');
  const rotatedAt = Date.now();

  const during = inbound('during the overlap');
  await postCallback(w.url, [during.event]);
  const [d] = (await waitFor(() => seenBy('api-rot', during.id).length > 0 && seenBy('api-rot', during.id))) || [];
  assert.ok(d, 'delivered during the overlap');
  assert.ok(d.at - rotatedAt < OVERLAP_MS, 'inside the overlap');
  assert.equal(verifies(fresh, d.raw, d.headers), true, 'the new secret alone verifies');
  assert.equal(verifies(made.secret, d.raw, d.headers), true, 'the old secret alone verifies');

  await settle(Math.max(0, rotatedAt + OVERLAP_MS + 200 - Date.now()));
  const afterwards = inbound('after the overlap');
  await postCallback(w.url, [afterwards.event]);
  const [a] = (await waitFor(() => seenBy('api-rot', afterwards.id).length > 0 && seenBy('api-rot', afterwards.id))) || [];
  assert.ok(a, 'delivered after the overlap');
  assert.equal(verifies(fresh, a.raw, a.headers), true);
  assert.equal(verifies(made.secret, a.raw, a.headers), false, 'the old secret no longer signs');
  assert.deepEqual((await getJson(w.url, '/targets/api-main')).json.secretCreatedAt, before.json.secretCreatedAt, 'other targets untouched');
});

test('PATCH events: inbound messages no longer reach the target; statuses do', async () => {
  await make({ id: 'api-filter', url: `${receiver.url}/api-filter` });
  const res = await call('PATCH', '/targets/api-filter', { events: ['message.status'] });
  assert.equal(res.status, 200);
  assert.deepEqual((await res.json()).events, ['message.status']);
  const m = inbound('not for the filtered target');
  const sentId = uniqueId('tgt-status');
  await postCallback(w.url, [m.event]);
  await postCallback(w.url, [statusEvent(sentId)]);
  assert.ok(await waitFor(() => seenBy('api-filter', sentId).length > 0), 'the status arrives');
  assert.ok(await waitFor(() => seenBy('api-main', m.id).length > 0), 'the inbound reached the unfiltered target');
  await settle(2000);
  assert.equal(seenBy('api-filter', m.id).length, 0, 'the inbound never reached the filtered target');
});

test('ratePerSecond 2 with 30 changes queued: never more than 2 in any second, none failed', async () => {
  await make({ id: 'api-paced', url: `${receiver.url}/api-paced`, ratePerSecond: 2, events: ['message.received'] });
  const messages = Array.from({ length: 30 }, (_, i) => inbound(`paced ${i}`));
  const answers = await Promise.all(messages.map((m) => postCallback(w.url, [m.event])));
  assert.ok(answers.every((r) => r.status === 200));
  const all = await waitFor(() => {
    const got = receiver.seen.filter((r) => r.target === 'api-paced');
    return got.length >= 30 && got;
  }, 40_000);
  assert.ok(all, `all 30 arrived (${receiver.seen.filter((r) => r.target === 'api-paced').length})`);
  const times = all.map((r) => r.at).sort((a, b) => a - b);
  let worst = 0;
  for (let i = 0; i < times.length; i++) worst = Math.max(worst, times.filter((t) => t >= times[i] && t < times[i] + 1000).length);
  console.log(`# 30 paced deliveries over ${times.at(-1) - times[0]} ms; at most ${worst} in any second`);
  console.log(`# gaps: ${times.slice(1).map((t, i) => t - times[i]).join(' ')}`);
  assert.ok(worst <= 2, `${worst} deliveries within one second`);
  assert.equal(new Set(all.map((r) => r.id)).size, 30, 'each change once');
  const stats = (await getJson(w.url, '/targets/api-paced')).json;
  assert.equal(stats.dead, 0);
  assert.equal(stats.consecutiveFailures, 0, 'waiting is not failing');
});

test('disable pauses deliveries; enable sends what waited', async () => {
  const off = await call('POST', '/targets/api-main/disable');
  assert.equal((await off.json()).state, 'disabled');
  const m = inbound('while paused');
  await postCallback(w.url, [m.event]);
  await settle(1500);
  assert.equal(seenBy('api-main', m.id).length, 0, 'nothing attempted while paused');
  const on = await call('POST', '/targets/api-main/enable');
  assert.equal((await on.json()).state, 'active');
  assert.ok(await waitFor(() => seenBy('api-main', m.id).length === 1), 'delivered once enabled');
});

test('delete: nothing delivered after it; pending forwards are dead letters, replayable elsewhere or discarded', async () => {
  receiver.behaviour['api-doomed'] = { status: 500 };
  await make({ id: 'api-doomed', url: `${receiver.url}/api-doomed`, events: ['message.received'] });
  const ms = [inbound('doomed 1'), inbound('doomed 2'), inbound('doomed 3')];
  for (const m of ms) await postCallback(w.url, [m.event]);
  assert.ok(await waitFor(() => ms.every((m) => seenBy('api-doomed', m.id).length >= 2)), 'failing attempts are made');
  const res = await call('DELETE', '/targets/api-doomed');
  assert.equal(res.status, 204);
  const deletedAt = Date.now();
  receiver.behaviour['api-doomed'] = {};
  // No longer configured, it shows as removed while its dead letters remain.
  const removed = await getJson(w.url, '/targets/api-doomed');
  assert.deepEqual([removed.status, removed.json.state, removed.json.source, removed.json.dead], [200, 'removed', null, 3]);
  const dead = (await getJson(w.url, '/outbox/dead?target=api-doomed')).json.items;
  assert.deepEqual(dead.map((d) => d.messageId).sort(), ms.map((m) => m.id).sort());
  assert.ok(dead.every((d) => d.lastError === 'the target was deleted'));
  await settle(1500);
  assert.deepEqual(receiver.seen.filter((r) => r.target === 'api-doomed' && r.at > deletedAt), [], 'no delivery after the delete');

  // Replayed into another target, with the same webhook ids.
  // (api-filter takes statuses only, so it never had these.)
  const replay = await call('POST', '/outbox/replay', { target: 'api-doomed', into: 'api-filter' });
  assert.equal((await replay.json()).replayed, 3);
  assert.ok(await waitFor(() => ms.every((m) => seenBy('api-filter', m.id).some((r) => dead.some((d) => d.webhookId === r.id)))));
  // Into a target that already had them: none is sent there twice.
  const again = await call('POST', '/outbox/replay', { target: 'api-filter', into: 'api-main', ids: dead.map((d) => d.webhookId) });
  assert.equal((await again.json()).replayed, 0);
  assert.equal((await call('POST', '/outbox/replay', { target: 'api-doomed', into: 'nowhere' })).status, 404);

  // Or discarded.
  receiver.behaviour['api-gone'] = { status: 500 };
  await make({ id: 'api-gone', url: `${receiver.url}/api-gone`, events: ['message.received'] });
  const g = inbound('gone');
  await postCallback(w.url, [g.event]);
  assert.ok(await waitFor(() => seenBy('api-gone', g.id).length >= 1));
  assert.equal((await call('DELETE', '/targets/api-gone')).status, 204);
  const discarded = await call('POST', '/outbox/discard', { target: 'api-gone' });
  assert.equal((await discarded.json()).discarded, 1);
  assert.deepEqual((await getJson(w.url, '/outbox/dead?target=api-gone')).json.items, []);
  assert.equal((await getJson(w.url, '/targets/api-gone')).status, 404, 'nothing of it is left');
});

test('a shard that missed a change gets it from the registry within seconds', async () => {
  const version = async (shard) => (await shardSql(w.url, shard, 'SELECT version FROM api_targets'))[0]?.version ?? 0;
  // Shard 3 fails every write to its copy, as a shard that cannot be reached would.
  for (const op of ['INSERT', 'UPDATE']) {
    await shardSql(w.url, 3, `CREATE TRIGGER refuse_${op.toLowerCase()} BEFORE ${op} ON api_targets BEGIN SELECT RAISE(ABORT, 'injected'); END`);
  }
  const before = await version(3);
  const res = await call('PATCH', '/targets/api-filter', { description: 'changed while shard 3 was down' });
  assert.equal(res.status, 200, 'the change is made, and answered');
  const now = await version(0);
  assert.ok(now > before, 'the other shards hold it at once');
  assert.equal(await version(3), before, 'shard 3 does not');
  for (const op of ['insert', 'update']) await shardSql(w.url, 3, `DROP TRIGGER refuse_${op}`);
  const healedAt = Date.now();
  assert.ok(await waitFor(async () => (await version(3)) === now, 10_000), 'the registry hands it over again');
  console.log(`# shard 3 caught up ${Date.now() - healedAt} ms after it could take the change`);
});

test('a restart keeps API-made targets and their secrets', async () => {
  const before = (await getJson(w.url, '/targets')).json.targets.map((t) => t.id).sort();
  const { persistDir } = w;
  await w.kill();
  w = await startWorker({ vars: vars(), build: 'build-test', persistDir });
  assert.deepEqual((await getJson(w.url, '/targets')).json.targets.map((t) => t.id).sort(), before);
  const m = inbound('after the restart');
  await postCallback(w.url, [m.event]);
  const [got] = (await waitFor(() => seenBy('api-rot', m.id).length > 0 && seenBy('api-rot', m.id))) || [];
  assert.ok(got, 'delivered after the restart');
  assert.equal(verifies(rotSecret, got.raw, got.headers), true, 'signed with the secret kept, sealed, across the restart');
});
