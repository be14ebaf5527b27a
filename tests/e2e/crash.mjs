// Crash-restart durability, shared by the test suite (short form, under
// wrangler dev) and the benchmark (longer, under plain workerd).
//
// Drives callbacks continuously, SIGKILLs the runtime at random moments,
// restarts it on the same storage, and finally checks that every
// acknowledged event is stored exactly once.

/** A realistic two-event callback for message `id`. */
function callback(id) {
  const base = {
    description: 'ok', to: '+15552220001',
    message: { id, owner: '+15551110000', applicationId: 'crash', time: '2026-11-20T15:04:04.980Z', segmentCount: 1, direction: 'out', to: ['+15552220001'], from: '+15551110000', text: '' },
  };
  return JSON.stringify([
    { type: 'message-sent', time: '2026-11-20T15:04:05.000Z', ...base },
    { type: 'message-delivered', time: '2026-11-20T15:04:06.000Z', ...base },
  ]);
}

/**
 * `start({ persistDir })` starts the runtime and returns { url, persistDir, kill(), stop() }.
 * `auth` is the callback Authorization header, `apiToken` the read token.
 */
export async function crashRestart({ start, kills = 3, senders = 8, auth, apiToken, prefix = `crash-${process.pid}-${Date.now()}` }) {
  let rt = await start({});
  const persistDir = rt.persistDir;
  const acked = new Set();
  const attempted = [];
  let n = 0;
  for (let round = 0; round < kills; round++) {
    let stop = false;
    const url = rt.url;
    const sender = async () => {
      while (!stop) {
        const id = `${prefix}-${n++}`;
        attempted.push(id);
        try {
          const r = await fetch(`${url}/callbacks/bandwidth`, { method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' }, body: callback(id) });
          await r.arrayBuffer();
          if (r.status === 200) acked.add(id);
        } catch { /* cut by the kill: not acknowledged */ }
      }
    };
    const running = Array.from({ length: senders }, sender);
    // A random moment: after 150 to 600 ms of traffic.
    await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
    await rt.kill();
    stop = true;
    await Promise.all(running);
    rt = await start({ persistDir });
  }
  let found = 0, lost = 0, duplicated = 0, unackedPresent = 0;
  const check = async (id) => {
    const r = await fetch(`${rt.url}/messages/${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${apiToken}` } });
    if (r.status === 404) { await r.arrayBuffer(); return 0; }
    if (r.status !== 200) throw new Error(`read ${id}: ${r.status}`);
    const m = await r.json();
    return m.timeline.length;
  };
  for (const id of attempted) {
    const events = await check(id);
    if (acked.has(id)) {
      if (events === 0) lost += 1;
      else { found += 1; if (events !== 2) duplicated += 1; }
    } else if (events > 0) {
      unackedPresent += 1;
      if (events !== 2) duplicated += 1;
    }
  }
  await rt.stop();
  return { kills, acknowledged: acked.size, attempted: attempted.length, found, lost, duplicated, unackedPresent };
}
