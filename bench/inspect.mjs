// V8 CPU profiles of one Worker's isolate in the bench's workerd, through
// its inspector (`--inspector-addr`), and what they say: self time per
// function, the isolate's longest busy stretches, and time per phase by a
// classifier over each sample's stack. Used by `BENCH_ONLY=profile`
// (bench/measure/profile.mjs) and `node bench/profile.mjs`.
import { join } from 'node:path';
import WebSocket from 'ws';
import { ROOT, freePort, removeStorage, startWorkerd, writeConfig } from './workerd.mjs';

/** A workerd of its own with the inspector on, on fresh storage in `out`:
 * the ledger, the empty Workers and (with `peer`) the JS peer. `stop()`
 * stops it and removes its storage. */
export async function startInspectedWorkerd(out, vars, { peer = false } = {}) {
  const storage = join(out, `profile-${Date.now()}`);
  const ports = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort(), ...(peer ? { peer: await freePort() } : {}) };
  const inspector = await freePort();
  const config = writeConfig(out, { ports, vars, storage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  const wd = await startWorkerd(config, ports.ledger, join(out, 'workerd-profile.log'), [`--inspector-addr=127.0.0.1:${inspector}`]);
  return { ports, inspector, wd, async stop() { await wd.stop(); removeStorage(storage); } };
}

/** Opens the inspector session of the Worker whose title names `service`. */
export async function inspect(inspectorPort, service) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = targets.find((t) => t.title?.includes(service));
  if (!target) throw new Error(`no inspector target for ${service}: ${targets.map((t) => t.title).join(', ')}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
  let id = 0;
  const pending = new Map();
  ws.on('message', (m) => { const j = JSON.parse(m); pending.get(j.id)?.(j); });
  const send = (method, params = {}) => new Promise((res) => { const i = ++id; pending.set(i, res); ws.send(JSON.stringify({ id: i, method, params })); });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 200 });
  return {
    /** Profiles the isolate while `work()` runs; answers its result and the profile. */
    async during(work) {
      await send('Profiler.start');
      const result = await work();
      const { result: { profile } } = await send('Profiler.stop');
      return { result, profile };
    },
    close: () => ws.close(),
  };
}

/** Each sample as [its stack's call frames, leaf first; its duration in ms]. */
export function samples(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map();
  const stackOf = (id) => {
    if (!stacks.has(id)) {
      const frames = [];
      for (let cur = id; cur !== undefined; cur = parent.get(cur)) frames.push(byId.get(cur).callFrame);
      stacks.set(id, frames);
    }
    return stacks.get(id);
  };
  return profile.samples.map((id, i) => [stackOf(id), (profile.timeDeltas[i] ?? 0) / 1000]);
}

export const frameName = (f) => `${f.functionName || '(anonymous)'} ${f.url ? f.url.split('/').at(-1) : ''}`.trim();

/** Milliseconds per phase, and of them in samples `crossing(stack)` picks:
 * `classify(stack)` names each sample's phase (null: not counted). */
export function phases(profile, classify, crossing = () => false) {
  const out = new Map();
  for (const [stack, ms] of samples(profile)) {
    const phase = classify(stack);
    if (phase === null) continue;
    const p = out.get(phase) ?? { ms: 0, crossingMs: 0 };
    p.ms += ms;
    if (crossing(stack)) p.crossingMs += ms;
    out.set(phase, p);
  }
  return out;
}

/** Self time per function, largest first: [name, share of the samples]. */
export function selfTimes(profile) {
  const self = new Map();
  for (const [stack, ms] of samples(profile)) self.set(frameName(stack[0]), (self.get(frameName(stack[0])) ?? 0) + ms);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return { total, rows: [...self.entries()].sort((a, b) => b[1] - a[1]).map(([n, t]) => [n, t / total]) };
}

/** The isolate thread's longest runs of samples without "(idle)": what a tail waits behind. */
export function busyStretches(profile, top = 5) {
  const stretches = [];
  let cur = null;
  for (const [stack, ms] of samples(profile)) {
    const name = stack[0].functionName || '(anonymous)';
    if (name === '(idle)') { if (cur) stretches.push(cur); cur = null; continue; }
    cur ??= { ms: 0, self: new Map() };
    cur.ms += ms;
    cur.self.set(name, (cur.self.get(name) ?? 0) + ms);
  }
  if (cur) stretches.push(cur);
  return stretches.sort((a, b) => b.ms - a.ms).slice(0, top);
}
