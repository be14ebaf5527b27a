// Fuzzing, the longer form: the core's proptest strategies in release mode.
import { execSync } from 'node:child_process';
import { ROOT } from '../workerd.mjs';
import { FUZZ_CASES, log } from '../lib.mjs';

export function measureFuzz({ results }) {
  // Fuzzing, longer form.
  let fuzz = '';
  try {
    fuzz = execSync(`cargo test --release -p bw-ledger-core --test fuzz -- --nocapture --test-threads 1`, { cwd: ROOT, env: { ...process.env, FUZZ_CASES: String(FUZZ_CASES) }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    // A fuzz failure is a finding: report it, write the rest, exit non-zero.
    fuzz = String(e.stdout ?? '');
    const minimal = String(e.stdout ?? '').match(/minimal failing input[\s\S]{0,400}/)?.[0] ?? 'see cargo test output';
    log(`FUZZ FAILURE: ${minimal}`);
    process.exitCode = 1;
  }
  // Every strategy, passed or failed: cargo's "test <name> ..." lines, and
  // the names it lists under its final "failures:", with the inputs each
  // passing strategy tried.
  const tried = Object.fromEntries([...fuzz.matchAll(/fuzz ([^:\n]+): (\d+) inputs tried/g)].map((m) => [m[1], Number(m[2])]));
  const failedNames = /^failures:\s*$/m.test(fuzz) ? [...fuzz.split(/^failures:\s*$/m).at(-1).matchAll(/^ {4}(\S+)\s*$/gm)].map((m) => m[1]) : [];
  results.fuzzStrategies = [...fuzz.matchAll(/^test (\S+) \.\.\. /gm)].map((m) => ({ test: m[1], passed: !failedNames.includes(m[1]) }));
  results.fuzzInputs = Object.values(tried).reduce((a, b) => a + b, 0);
  results.fuzz = Object.entries(tried).map(([name, n]) => `fuzz ${name}: ${n} inputs tried, no panic`);
  results.fuzzFailed = results.fuzzStrategies.filter((s) => !s.passed).map((s) => s.test);
  if (results.fuzzStrategies.length === 0) results.fuzzFailed.push('(the fuzz test did not run: see the cargo output above)');
  for (const l of results.fuzz) log(l);
  for (const f of results.fuzzFailed) log(`FUZZ STRATEGY FAILED: ${f}`);
  if (results.fuzzFailed.length > 0) process.exitCode = 1;
}
