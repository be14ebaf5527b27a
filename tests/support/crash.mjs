// Crash-restart durability, shared by the test suite (short form, under
// wrangler dev) and the benchmark (longer, under plain workerd).
//
// Drives callbacks continuously, SIGKILLs the runtime at random moments,
// restarts it on the same storage, resends what was sent before each kill
// (as Bandwidth retries), and finally checks every callback id by id.

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
 *
 * Each round drives traffic, SIGKILLs the runtime at a random moment and
 * restarts it on the same storage. Then, as Bandwidth would, every callback
 * sent before the kill is sent again, acknowledged or not, until it is
 * acknowledged: a write that committed while its 200 was lost in the kill
 * must be recognised as a duplicate. Before the resends, every callback
 * acknowledged before the kill must already be there (`lostAcked`). At the end every callback ever sent
 * must be stored exactly once (its two events), so the ones unacknowledged
 * before their kill are present after their resend.
 */
export async function crashRestart({ start, kills = 3, senders = 8, auth, apiToken, prefix = `crash-${process.pid}-${Date.now()}` }) {
  let rt = await start({});
  const persistDir = rt.persistDir;
  const attempted = [];
  const ackedBeforeKill = new Set();
  let n = 0;
  let resent = 0;
  let resendErrors = 0;
  const lostAcked = [];
  const post = (url, id) => fetch(`${url}/callbacks/bandwidth`, { method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' }, body: callback(id) });
  const check = async (id) => {
    const r = await fetch(`${rt.url}/messages/${encodeURIComponent(id)}`, { headers: { Authorization: `Bearer ${apiToken}` } });
    if (r.status === 404) { await r.arrayBuffer(); return 0; }
    if (r.status !== 200) throw new Error(`read ${id}: ${r.status}`);
    const m = await r.json();
    return m.timeline.length;
  };
  for (let round = 0; round < kills; round++) {
    let stop = false;
    const url = rt.url;
    const sentThisRound = [];
    const sender = async () => {
      while (!stop) {
        const id = `${prefix}-${n++}`;
        attempted.push(id);
        sentThisRound.push(id);
        try {
          const r = await post(url, id);
          await r.arrayBuffer();
          if (r.status === 200) ackedBeforeKill.add(id);
        } catch { /* cut by the kill: not acknowledged */ }
      }
    };
    const running = Array.from({ length: senders }, sender);
    // A random moment: after 150 to 600 ms of traffic.
    await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
    // No new callbacks from here; those in flight are cut by the kill.
    stop = true;
    await rt.kill();
    await Promise.all(running);
    rt = await start({ persistDir });
    // What was acknowledged before the kill is there before any resend.
    for (const id of sentThisRound) {
      if (ackedBeforeKill.has(id) && (await check(id)) === 0) lostAcked.push(id);
    }
    // Bandwidth's retries: everything sent before the kill, until acknowledged.
    const queue = [...sentThisRound];
    const resender = async () => {
      while (queue.length > 0) {
        const id = queue.shift();
        for (let attempt = 1; ; attempt++) {
          try {
            const r = await post(rt.url, id);
            await r.arrayBuffer();
            if (r.status === 200) break;
          } catch { /* retried below */ }
          resendErrors += 1;
          if (attempt >= 20) throw new Error(`resend of ${id} never acknowledged`);
          await new Promise((res) => setTimeout(res, 100 * attempt));
        }
        resent += 1;
      }
    };
    await Promise.all(Array.from({ length: senders }, resender));
  }
  const missing = [];
  const duplicated = [];
  let unackedPresent = 0;
  for (const id of attempted) {
    const events = await check(id);
    if (events === 0) missing.push(id);
    else if (events !== 2) duplicated.push(id);
    else if (!ackedBeforeKill.has(id)) unackedPresent += 1;
  }
  await rt.stop();
  return {
    kills,
    attempted: attempted.length,
    acknowledged: ackedBeforeKill.size,
    unacknowledged: attempted.length - ackedBeforeKill.size,
    resent,
    resendErrors,
    unackedPresent,
    found: attempted.length - missing.length,
    lost: missing.length,
    duplicated: duplicated.length,
    missing,
    duplicatedIds: duplicated,
    /** Acknowledged before a kill, and absent after the restart (before any resend). */
    lostAcked,
  };
}
