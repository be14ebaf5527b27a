// Durability: what was acknowledged survives the runtime being killed,
// several times, at random moments, and is stored exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, basic, SECRETS, postCallback, statusEvent } from './harness.mjs';
import { crashRestart } from '../support/crash.mjs';

test('SIGKILL at random moments, restart, resend as Bandwidth would: every callback stored exactly once', async () => {
  let last;
  const result = await crashRestart({
    start: async ({ persistDir }) => {
      const w = await startWorker({ persistDir });
      last = w;
      return { url: w.url, persistDir: w.persistDir, kill: () => w.kill(), stop: () => w.stop() };
    },
    kills: 5,
    auth: basic(),
    apiToken: SECRETS.API_TOKEN,
  });
  console.log(`kills=${result.kills} sent=${result.attempted} acknowledged before their kill=${result.acknowledged} resent=${result.resent} (non-2xx or errors on resend: ${result.resendErrors}); unacknowledged ${result.unacknowledged}, present after resend ${result.unackedPresent}`);
  assert.ok(result.acknowledged >= 30, `enough traffic to mean something: ${result.acknowledged}`);
  assert.ok(result.unacknowledged >= 1, 'some callbacks were cut by a kill');
  assert.deepEqual(result.lostAcked, [], 'every acknowledged callback survived its kill, before any resend');
  assert.deepEqual(result.missing, [], 'no callback is missing after its resend');
  assert.deepEqual(result.duplicatedIds, [], 'none is stored twice');
  assert.equal(result.found, result.attempted);
  assert.equal(result.unackedPresent, result.unacknowledged);
  assert.ok(last);
});

test('a retry after a restart is still recognised as a duplicate', async () => {
  const w = await startWorker();
  const id = `restart-dup-${process.pid}`;
  assert.equal((await postCallback(w.url, [statusEvent(id)])).status, 200);
  await w.kill();
  const again = await startWorker({ persistDir: w.persistDir });
  try {
    const r = await postCallback(again.url, [statusEvent(id)]);
    assert.deepEqual(await r.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  } finally {
    await again.stop();
  }
});
