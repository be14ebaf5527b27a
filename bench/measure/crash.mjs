// Crash-restart, the longer form, under plain workerd: SIGKILLs at random
// moments under 16 senders, restarts on the same storage, resends.
import { join } from 'node:path';
import { crashRestart } from '../../tests/support/crash.mjs';
import { ROOT, freePort, startWorkerd, writeConfig } from '../workerd.mjs';
import { API_TOKEN, AUTH, CRASH_KILLS, OUT, log } from '../lib.mjs';

export async function measureCrash({ results, at, vars }) {
  // Crash-restart, longer form, under plain workerd.
  const crashStorage = join(OUT, `crash-${Date.now()}`);
  const crashPorts = { ledger: await freePort(), emptyJs: await freePort(), emptyRust: await freePort() };
  const crashConfig = writeConfig(join(OUT), { ports: crashPorts, vars, storage: crashStorage, emptyRustBuild: join(ROOT, 'bench/empty-rust/build') });
  results.crash = await crashRestart({
    start: async () => {
      const w = await startWorkerd(crashConfig, crashPorts.ledger, join(OUT, 'workerd-crash.log'));
      return { url: `http://${at(crashPorts.ledger)}`, persistDir: crashStorage, kill: () => w.kill(), stop: () => w.stop() };
    },
    kills: CRASH_KILLS, senders: 16, auth: AUTH, apiToken: API_TOKEN,
  });
  const c = results.crash;
  log(`crash-restart: ${c.kills} SIGKILLs, ${c.attempted} callbacks sent, ${c.acknowledged} acknowledged before their kill, all resent after it (${c.resent}; non-2xx or errors on resend ${c.resendErrors}); acknowledged before a kill but absent after the restart ${c.lostAcked.length}; missing after the resends ${c.lost}${c.lost ? ': ' + c.missing.slice(0, 20).join(', ') : ''}, duplicated ${c.duplicated}; unacknowledged before the kill and present after the resend ${c.unackedPresent} of ${c.unacknowledged}`);
  return crashStorage;
}
