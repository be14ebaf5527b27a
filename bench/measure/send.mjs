// The send proxy's added latency over calling the fake upstream directly,
// then with 1,000 opt-outs in the book (a send asks it once, beside its
// key's guard), and an operator send with "optOutOverride" (no book).
import { loadgen } from '../workerd.mjs';
import { ACCOUNT, API_TOKEN, CLIENT_KEY, log, ms } from '../lib.mjs';

export async function measureSend({ results, fake, at, ports }) {
  const sendBody = JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'bench' });
  const sendArgs = (auth, body = sendBody) => ['--path', `/api/v2/users/${ACCOUNT}/messages`, '--body', body, '--auth', auth, '--connections', '4', '--duration', '5'];
  const fakeAddr = fake.url.replace('http://', '');
  results.sendDirect = await loadgen(fakeAddr, ['--path', `/api/v2/users/${ACCOUNT}/messages`, '--body', sendBody, '--connections', '4', '--duration', '5']);
  results.sendProxy = await loadgen(at(ports.ledger), sendArgs(`Bearer ${CLIENT_KEY}`));
  log(`send: direct to fake p50 ${ms(results.sendDirect.p50_ms)} p99 ${ms(results.sendDirect.p99_ms)}; through the Worker p50 ${ms(results.sendProxy.p50_ms)} p99 ${ms(results.sendProxy.p99_ms)}; added p50 ${ms(results.sendProxy.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendProxy.non2xx})`);
  const optouts = Array.from({ length: 1000 }, (_, i) => `+1555${String(8000000 + i)}`);
  for (let i = 0; i < optouts.length; i += 50) {
    await Promise.all(optouts.slice(i, i + 50).map((number) => fetch(`http://${at(ports.ledger)}/optouts`, {
      method: 'POST', headers: { Authorization: `Bearer ${API_TOKEN}` }, body: JSON.stringify({ number, note: 'bench' }),
    }).then((r) => r.arrayBuffer())));
  }
  results.sendProxyOptOuts = await loadgen(at(ports.ledger), sendArgs(`Bearer ${CLIENT_KEY}`));
  log(`send with ${optouts.length} opt-outs in the book: p50 ${ms(results.sendProxyOptOuts.p50_ms)} p99 ${ms(results.sendProxyOptOuts.p99_ms)}; added p50 ${ms(results.sendProxyOptOuts.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendProxyOptOuts.non2xx})`);
  const overrideBody = JSON.stringify({ to: ['+15552220001'], from: '+15551110000', text: 'bench', optOutOverride: true });
  results.sendOverride = await loadgen(at(ports.ledger), sendArgs(`Bearer ${API_TOKEN}`, overrideBody));
  log(`operator send with optOutOverride (guard only, no book): p50 ${ms(results.sendOverride.p50_ms)} p99 ${ms(results.sendOverride.p99_ms)}; added p50 ${ms(results.sendOverride.p50_ms - results.sendDirect.p50_ms)} (non-2xx ${results.sendOverride.non2xx})`);
  if (results.sendProxy.non2xx + results.sendProxyOptOuts.non2xx + results.sendOverride.non2xx > 0) process.exitCode = 1;
}
