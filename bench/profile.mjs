// `node bench/profile.mjs`: a V8 CPU profile of the ledger's isolate under
// full ingest load (plain workerd, like the bench), summarised as self time
// per function, wasm functions by their Rust names. Run `npm run bench` once
// first so the release Worker and the load generator are built.
// BENCH_SECONDS (default 8) and BENCH_CONNECTIONS (32) apply; PROFILE_RATE
// runs open loop at that many callbacks/s instead of full load; PROFILE_TOP
// (40) is how many rows to print. It also lists the longest stretches of
// the isolate thread busy without a break. The raw profile goes to
// bench/out/ledger.cpuprofile (loadable in Chrome DevTools).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ROOT, freePort, writeConfig, startWorkerd, loadgen as runLoadgen } from './workerd.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const TOP = Number(process.env.PROFILE_TOP ?? 40);
const RATE = process.env.PROFILE_RATE;
const OUT = join(ROOT, 'bench/out');
const AUTH = 'Basic ' + Buffer.from('bench:bench-pass').toString('base64');

async function main() {
  mkdirSync(OUT, { recursive: true });
  const storage = join(OUT, `profile-${Date.now()}`);
  const ports = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort() };
  const inspector = await freePort();
  const vars = { CALLBACK_USER: 'bench', CALLBACK_PASSWORD: 'bench-pass', API_TOKEN: 'bench-api-token', BW_ACCOUNT_ID: '9900000' };
  const config = writeConfig(OUT, { ports, vars, storage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  const wd = await startWorkerd(config, ports.ledger, join(OUT, 'workerd-profile.log'), [`--inspector-addr=127.0.0.1:${inspector}`]);
  try {
    const targets = await (await fetch(`http://127.0.0.1:${inspector}/json/list`)).json();
    const target = targets.find((t) => t.title?.includes('ledger')) ?? targets[0];
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
    let id = 0;
    const pending = new Map();
    ws.on('message', (m) => { const j = JSON.parse(m); pending.get(j.id)?.(j); });
    const send = (method, params = {}) => new Promise((res) => { const i = ++id; pending.set(i, res); ws.send(JSON.stringify({ id: i, method, params })); });
    const loadgen = (args) => runLoadgen(`127.0.0.1:${ports.ledger}`, args);
    await loadgen(['--auth', AUTH, '--duration', '2', '--connections', String(CONNECTIONS), '--prefix', 'warm']);
    await send('Profiler.enable');
    await send('Profiler.setSamplingInterval', { interval: 200 });
    await send('Profiler.start');
    const load = await loadgen(['--auth', AUTH, '--duration', String(SECONDS), '--connections', String(CONNECTIONS), '--prefix', 'prof', ...(RATE ? ['--rate', RATE] : [])]);
    const { result } = await send('Profiler.stop');
    ws.close();
    console.log(`load: ${JSON.stringify(load)}`);
    const profile = result.profile;
    writeFileSync(join(OUT, 'ledger.cpuprofile'), JSON.stringify(profile));
    // Self time per function name.
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map();
    const dt = profile.timeDeltas;
    profile.samples.forEach((nodeId, i) => {
      const f = byId.get(nodeId).callFrame;
      const name = `${f.functionName || '(anonymous)'} ${f.url ? f.url.split('/').at(-1) : ''}`.trim();
      self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0));
    });
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    console.log(`self time by function (of ${(total / 1000).toFixed(0)} ms sampled):`);
    for (const [name, t] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${((t / total) * 100).toFixed(1).padStart(5)}%  ${name}`);
    }
    // Busy stretches: consecutive samples with no (idle) between them. Long
    // ones are what the tail latency waits behind.
    const stretches = [];
    let cur = null;
    profile.samples.forEach((nodeId, i) => {
      const name = byId.get(nodeId).callFrame.functionName;
      const d = dt[i] ?? 0;
      if (name === '(idle)') { if (cur) stretches.push(cur); cur = null; return; }
      cur ??= { ms: 0, self: new Map() };
      cur.ms += d / 1000;
      cur.self.set(name || '(anonymous)', (cur.self.get(name || '(anonymous)') ?? 0) + d / 1000);
    });
    if (cur) stretches.push(cur);
    stretches.sort((a, b) => b.ms - a.ms);
    console.log('longest busy stretches:');
    for (const st of stretches.slice(0, 5)) {
      const top = [...st.self].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([n, t]) => `${n.slice(0, 60)} ${t.toFixed(1)} ms`).join(', ');
      console.log(`  ${st.ms.toFixed(1)} ms: ${top}`);
    }
  } finally {
    await wd.stop();
    rmSync(storage, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
