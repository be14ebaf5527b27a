// Runs Workers under plain workerd (the binary from the npm package), with
// a config generated from wrangler.toml: no wrangler dev proxy in the path.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync, mkdirSync, createWriteStream, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '../..');
/** The ledger build to run: `build/`, or `BENCH_BUILD` (another checkout's
 * build/, for a before/after comparison in one session). */
export const LEDGER_BUILD = resolve(process.env.BENCH_BUILD ?? join(ROOT, 'build'));
export const WORKERD = join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd');
export const LOADGEN = join(ROOT, 'target/release/bw-ledger-loadgen');

/** Runs the load generator against `addr` and returns its JSON summary. Asynchronous:
 * a fake upstream in the calling process must keep answering meanwhile. */
export async function loadgen(addr, args) {
  const { stdout } = await promisify(execFile)(LOADGEN, ['--addr', addr, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1));
}

export { freePort } from '../tests/support/ports.mjs';

/** The bits of wrangler.toml the config needs: vars, DO bindings, date. */
export function readWranglerToml() {
  const src = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8');
  const date = src.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
  const vars = {};
  const varsBlock = src.split(/^\[vars\]\s*$/m)[1]?.split(/^\[/m)[0] ?? '';
  for (const m of varsBlock.matchAll(/^([A-Z0-9_]+)\s*=\s*"([^"]*)"/gm)) vars[m[1]] = m[2];
  const durableObjects = [...src.matchAll(/\{\s*name\s*=\s*"([A-Z_]+)",\s*class_name\s*=\s*"(\w+)"\s*\}/g)].map((m) => ({ name: m[1], className: m[2] }));
  return { date, vars, durableObjects };
}

const str = (s) => JSON.stringify(String(s));

/**
 * Writes a workerd config: the ledger (with `vars`), an empty JS Worker and
 * an empty Rust Worker, each on its own port, Durable Objects on local disk.
 * With `ports.peer`, also the hand-written JS peer (bench/peer-js.mjs); with
 * `ports.metered`, also the same ledger build behind bench/meter-shim.mjs,
 * on storage of its own, for counting rows written. With `ledgerShim`, the
 * ledger itself runs behind that module (bench/cap-shim.mjs).
 */
export function writeConfig(dir, { ports, vars, storage, emptyRustBuild, ledgerShim }) {
  const w = readWranglerToml();
  // capnp resolves `embed` relative to the config file.
  const rel = (p) => str(relative(dir, p));
  const allVars = { ...w.vars, ...vars };
  const bindings = [
    ...w.durableObjects.map((d) => `(name = ${str(d.name)}, durableObjectNamespace = ${str(d.className)})`),
    ...Object.entries(allVars).map(([k, v]) => `(name = ${str(k)}, text = ${str(v)})`),
  ];
  /** The ledger as a workerd Worker: its build (after `firstModules`), its
   * bindings, and Durable Objects keyed by `keyPrefix` on disk `disk`. */
  const ledgerWorker = (name, { firstModules = [], keyPrefix, disk }) => `const ${name} :Workerd.Worker = (
  modules = [
    ${[...firstModules,
      `(name = "index.js", esModule = embed ${rel(join(LEDGER_BUILD, 'index.js'))})`,
      `(name = "index_bg.wasm", wasm = embed ${rel(join(LEDGER_BUILD, 'index_bg.wasm'))})`].join(',\n    ')},
  ],
  compatibilityDate = ${str(w.date)},
  bindings = [
    ${bindings.join(',\n    ')}
  ],
  durableObjectNamespaces = [
    ${w.durableObjects.map((d) => `(className = ${str(d.className)}, uniqueKey = ${str(`${keyPrefix}-${d.className}`)}, enableSql = true)`).join(',\n    ')}
  ],
  durableObjectStorage = (localDisk = ${str(disk)}),
  globalOutbound = "internet",
);`;
  const extraServices = [];
  const extraSockets = [];
  const extraWorkers = [];
  if (ports.peer) {
    extraServices.push('(name = "peer-js", worker = .peerJs)', `(name = "storage-peer", disk = (path = ${str(storage + '-peer')}, writable = true))`);
    extraSockets.push(`(name = "peer-js", address = "127.0.0.1:${ports.peer}", http = (), service = "peer-js")`);
    extraWorkers.push(`const peerJs :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed ${rel(join(ROOT, 'bench/peer-js.mjs'))})],
  compatibilityDate = ${str(w.date)},
  bindings = [(name = "PEER", durableObjectNamespace = "PeerShard")],
  durableObjectNamespaces = [(className = "PeerShard", uniqueKey = "bw-ledger-peer", enableSql = true)],
  durableObjectStorage = (localDisk = "storage-peer"),
);`);
    mkdirSync(storage + '-peer', { recursive: true });
  }
  if (ports.metered) {
    extraServices.push('(name = "ledger-metered", worker = .ledgerMetered)', `(name = "storage-metered", disk = (path = ${str(storage + '-metered')}, writable = true))`);
    extraSockets.push(`(name = "ledger-metered", address = "127.0.0.1:${ports.metered}", http = (), service = "ledger-metered")`);
    extraWorkers.push(ledgerWorker('ledgerMetered', {
      firstModules: [`(name = "shim.js", esModule = embed ${rel(join(ROOT, 'bench/meter-shim.mjs'))})`],
      keyPrefix: 'bw-ledger-metered',
      disk: 'storage-metered',
    }));
    mkdirSync(storage + '-metered', { recursive: true });
  }
  const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "ledger", worker = .ledger),
    (name = "empty-js", worker = .emptyJs),
    (name = "empty-rust", worker = .emptyRust),
    (name = "storage", disk = (path = ${str(storage)}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),
    ${extraServices.join(',\n    ')}
  ],
  sockets = [
    (name = "ledger", address = "127.0.0.1:${ports.ledger}", http = (), service = "ledger"),
    (name = "empty-js", address = "127.0.0.1:${ports.emptyJs}", http = (), service = "empty-js"),
    (name = "empty-rust", address = "127.0.0.1:${ports.emptyRust}", http = (), service = "empty-rust"),
    ${extraSockets.join(',\n    ')}
  ],
);
${extraWorkers.join('\n')}
${ledgerWorker('ledger', {
    keyPrefix: 'bw-ledger',
    disk: 'storage',
    firstModules: ledgerShim ? [`(name = "shim.js", esModule = embed ${rel(ledgerShim)})`] : [],
  })}
const emptyJs :Workerd.Worker = (
  modules = [(name = "index.js", esModule = embed ${rel(join(ROOT, 'bench/empty-js.mjs'))})],
  compatibilityDate = ${str(w.date)},
);
const emptyRust :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed ${rel(join(emptyRustBuild, 'index.js'))}),
    (name = "index_bg.wasm", wasm = embed ${rel(join(emptyRustBuild, 'index_bg.wasm'))}),
  ],
  compatibilityDate = ${str(w.date)},
);
`;
  mkdirSync(storage, { recursive: true });
  const path = join(dir, 'workerd.capnp');
  writeFileSync(path, config);
  return path;
}

/** Removes a config's storage: the ledger's directory and those of the
 * JS peer and the metered ledger beside it. */
export function removeStorage(storage) {
  for (const dir of [storage, `${storage}-peer`, `${storage}-metered`]) rmSync(dir, { recursive: true, force: true });
}

/** Starts workerd on a config; resolves once the ledger answers /healthz. */
export async function startWorkerd(configPath, ledgerPort, logPath, extraArgs = []) {
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(WORKERD, ['serve', configPath, '--experimental', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  let exited = false;
  child.on('exit', () => { exited = true; });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`workerd exited at start; see ${logPath}`);
    try {
      if ((await fetch(`http://127.0.0.1:${ledgerPort}/healthz`)).ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`workerd did not start; see ${logPath}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  const waitExit = () => new Promise((r) => (exited ? r() : child.once('exit', r)));
  return {
    child,
    /** CPU seconds of the process so far (user + system), from /proc. */
    cpuSeconds() {
      const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    },
    async kill() { child.kill('SIGKILL'); await waitExit(); },
    async stop() { child.kill('SIGTERM'); await waitExit(); },
  };
}

/**
 * A gradual rollout in one workerd: `versions` ({ vars, versionMs }, oldest
 * first) are builds of the ledger with their own vars and upload times
 * (`CF_VERSION_METADATA`). The first owns the Durable Objects (behind
 * `shim`), the others bind them by service name, as versions of one Worker
 * share its objects. A front Worker on `port` splits requests between the
 * versions by the weights last posted to `/__rollout` (all to the first at
 * start), as Cloudflare splits traffic during a gradual deployment.
 */
export function writeRolloutConfig(dir, { port, storage, build, vars, versions, shim }) {
  const w = readWranglerToml();
  const rel = (p) => str(relative(dir, p));
  const worker = (i, v) => {
    const owner = i === 0;
    const allVars = { ...w.vars, ...vars, ...v.vars };
    const bindings = [
      ...w.durableObjects.map((d) => owner
        ? `(name = ${str(d.name)}, durableObjectNamespace = ${str(d.className)})`
        : `(name = ${str(d.name)}, durableObjectNamespace = (className = ${str(d.className)}, serviceName = "v0"))`),
      ...Object.entries(allVars).map(([k, val]) => `(name = ${str(k)}, text = ${str(val)})`),
      `(name = "CF_VERSION_METADATA", json = ${str(JSON.stringify({ id: `v${i}`, tag: '', timestamp: new Date(v.versionMs).toISOString() }))})`,
    ];
    return `const v${i} :Workerd.Worker = (
  modules = [
    ${[...(owner && shim ? [`(name = "shim.js", esModule = embed ${rel(shim)})`] : []),
      `(name = "index.js", esModule = embed ${rel(join(build, 'index.js'))})`,
      `(name = "index_bg.wasm", wasm = embed ${rel(join(build, 'index_bg.wasm'))})`].join(',\n    ')},
  ],
  compatibilityDate = ${str(w.date)},
  bindings = [
    ${bindings.join(',\n    ')}
  ],
  ${owner ? `durableObjectNamespaces = [
    ${w.durableObjects.map((d) => `(className = ${str(d.className)}, uniqueKey = ${str(`bw-ledger-${d.className}`)}, enableSql = true)`).join(',\n    ')}
  ],
  durableObjectStorage = (localDisk = "storage"),` : ''}
  globalOutbound = "internet",
);`;
  };
  const front = `let weights = [1];
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === '/__rollout') { weights = await request.json(); return new Response('ok'); }
    if (path === '/__cap') return env.V0.fetch(request);
    let r = Math.random() * weights.reduce((a, b) => a + b, 0);
    let i = 0;
    while (i < weights.length - 1 && (r -= weights[i]) >= 0) i++;
    return env['V' + i].fetch(request);
  },
};
`;
  writeFileSync(join(dir, 'front.js'), front);
  const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "front", worker = .front),
    ${versions.map((_, i) => `(name = "v${i}", worker = .v${i})`).join(',\n    ')},
    (name = "storage", disk = (path = ${str(storage)}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "front", address = "127.0.0.1:${port}", http = (), service = "front")],
);
const front :Workerd.Worker = (
  modules = [(name = "front.js", esModule = embed "front.js")],
  compatibilityDate = ${str(w.date)},
  bindings = [${versions.map((_, i) => `(name = "V${i}", service = "v${i}")`).join(', ')}],
);
${versions.map((v, i) => worker(i, v)).join('\n')}
`;
  mkdirSync(storage, { recursive: true });
  const path = join(dir, 'workerd.capnp');
  writeFileSync(path, config);
  return path;
}
