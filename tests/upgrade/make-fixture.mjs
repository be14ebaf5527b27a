// Makes the upgrade fixture: the storage of a ledger written by an older
// build, and that build's own answers to a set of reads. The upgrade test
// (tests/e2e/upgrade.test.mjs) starts today's build on a copy of that
// storage and checks it answers the same.
//
//   node tests/upgrade/make-fixture.mjs <old build dir> <commit>
//
// The fixture in git was made from commit e627ca7 (the layout before the
// storage changes of issue #14): `git worktree add /tmp/old e627ca7`, then
// `worker-build --release --out-dir /tmp/oldbuild` there.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { startWorker, postCallback, ROOT } from '../e2e/harness.mjs';
import { DATA, READS, VARS } from './data.mjs';

const [build, commit] = process.argv.slice(2);
if (!build || !commit) throw new Error('usage: make-fixture.mjs <old build dir> <commit>');
const out = join(ROOT, 'tests/upgrade', `from-${commit}`);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// The harness takes a build directory relative to the repository.
const w = await startWorker({ build: relative(ROOT, resolve(build)), vars: VARS });
try {
  for (const body of DATA) {
    const r = await postCallback(w.url, body);
    if (r.status !== 200) throw new Error(`callback answered ${r.status}: ${await r.text()}`);
  }
  const answers = {};
  for (const path of READS) {
    const r = await fetch(`${w.url}${path}`, { headers: { Authorization: `Bearer ${VARS.API_TOKEN ?? 'test-api-token'}` } });
    answers[path] = { status: r.status, body: (await r.text()).replaceAll(w.url, 'ORIGIN') };
  }
  writeFileSync(join(out, 'answers.json'), JSON.stringify(answers, null, 1));
} finally {
  await w.stop();
}
// Only the ledger shards' storage: the object that holds the data, its
// write-ahead log folded into the database file so the fixture is whole.
const shards = join(out, 'state/v3/do/bw-ledger-LedgerShard');
cpSync(join(w.persistDir, 'v3/do/bw-ledger-LedgerShard'), shards, { recursive: true });
const fold = spawnSync('python3', ['-c', `
import glob, sqlite3
for f in glob.glob(${JSON.stringify(shards + '/*.sqlite')}):
    c = sqlite3.connect(f); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.execute('PRAGMA journal_mode=DELETE'); c.close()
`], { stdio: 'inherit' });
if (fold.status !== 0) throw new Error('python3 could not fold the write-ahead logs');
for (const f of readdirSync(shards)) if (/-(wal|shm)$/.test(f)) rmSync(join(shards, f));
console.log(`fixture written to ${out}`);
