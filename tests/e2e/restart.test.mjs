// Durability: what was acknowledged survives the runtime being killed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, postCallback, getJson, uniqueId, statusEvent } from './harness.mjs';

test('events acknowledged before a SIGKILL of workerd are all there after a restart, exactly once', async () => {
  let w = await startWorker();
  const persistDir = w.persistDir;
  const acked = [];
  const attempted = [];
  let stop = false;

  // Drive callbacks continuously from 8 concurrent senders...
  const sender = async () => {
    while (!stop) {
      const id = uniqueId('crash');
      attempted.push(id);
      try {
        const r = await postCallback(w.url, [statusEvent(id), statusEvent(id, { type: 'message-sent', time: '2026-11-20T15:04:06.000Z' })]);
        if (r.status === 200) acked.push(id);
      } catch { /* connection cut by the kill: not acknowledged */ }
    }
  };
  const senders = Array.from({ length: 8 }, sender);
  // ...and kill the runtime while they are mid-flight.
  while (acked.length < 150) await new Promise((r) => setTimeout(r, 20));
  await w.kill();
  stop = true;
  await Promise.all(senders);
  assert.ok(acked.length >= 150);

  w = await startWorker({ persistDir });
  try {
    let lost = 0;
    let duplicated = 0;
    for (const id of acked) {
      const r = await getJson(w.url, `/messages/${id}`);
      if (r.status !== 200) { lost += 1; continue; }
      if (r.json.timeline.length !== 2) duplicated += 1;
    }
    // Unacknowledged sends may or may not have landed, but never twice.
    for (const id of attempted.filter((id) => !acked.includes(id))) {
      const r = await getJson(w.url, `/messages/${id}`);
      if (r.status === 200) assert.equal(r.json.timeline.length, 2, id);
    }
    console.log(`acknowledged=${acked.length} attempted=${attempted.length} lost=${lost} duplicated=${duplicated}`);
    assert.equal(lost, 0);
    assert.equal(duplicated, 0);

    // A retry of an acknowledged callback after the restart is still a duplicate.
    const again = await postCallback(w.url, [statusEvent(acked[0])]);
    assert.deepEqual(await again.json(), { stored: 0, duplicates: 1, conflicts: 0, quarantined: 0 });
  } finally {
    await w.stop();
  }
});
