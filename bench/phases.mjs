// Which phase of a callback a profile sample belongs to, for the ledger
// and for the hand-written JS peer. A sample is classified by the innermost
// frame of its stack that names a phase, so SQLite's `exec` counts where
// the Rust function that ran the statement is. `crossing(stack)` tells
// whether a sample's own frame is wasm-bindgen's glue (or V8's crossing
// itself): what crosses between wasm and JS, shown within each phase.

/** The ledger's phases, in the order a callback meets them, each with the
 * Rust functions that mark it. The first rule that matches a frame wins. */
export const LEDGER_PHASES = [
  ['Worker: auth', /bw_ledger_core::auth::/],
  ['Worker: body read', /bw_ledger::http::read_bounded/],
  ['Worker: parse', /bw_ledger_core::event::|parse_callback_body/],
  // The identity hashes (SHA-256 of canonical JSON) are made as the plan
  // turns events into records.
  ['Worker: plan (grouping, identity hashes)', /bw_ledger_core::ingest::plan|bw_ledger_core::shard::|EventRecord.*from_event|from_rejected|bw_ledger_core::identity::|sha2::|digest::/],
  ['Worker: group commit (queue, timers)', /bw_ledger::group_commit::|bw_ledger_core::group::|worker::delay::|^setTimeout$|^clearTimeout$/],
  ['object hop (encode, call, decode)', /GroupStore>::store|bw_ledger::object_call::|JsStub::fetch|JsNamespace::|Response::text|Request::text/],
  ['shard: reply', /bw_ledger::object_call::reply/],
  ['shard: tombstones', /erased_among/],
  ['shard: dedup (event insert)', /insert_event|store_event|bw_ledger_core::identity::decide/],
  ['shard: media', /queue_media|objects::ledger::media::/],
  ['shard: outbox', /objects::ledger::outbox::|bw_ledger_core::forward::/],
  ['shard: list rows', /write_rows|reads::list_rows|bw_ledger_core::list::/],
  ['shard: projection and healing', /refresh_rows|reads::events_|bw_ledger_core::projection::|keep_unlisted/],
  ['shard: quarantine', /LedgerShard>?::quarantine/],
  ['shard: transaction (savepoint, commit)', /objects::transaction::|^transactionSync$/],
  ['shard: other (schema check, alarm, counters)', /objects::ledger::|LedgerShard/],
  ['Worker: log line', /bw_ledger::log::|console::log_1/],
  ['Request and Response objects (worker crate)', /Request as core::convert::From|From<worker::response::Response>|worker::headers::|worker::response::|^Response$|^Headers$/],
  ['Worker: routing, config, answer', /bw_ledger::fetch|bw_ledger::handle|bw_ledger::config::|bw_ledger_core::route::|bw_ledger::http::|routes::callback::receive|Env::durable_object/],
  ['async executor (wasm-bindgen futures)', /wasm_bindgen_futures|js_sys::futures|queueMicrotask|wasm_bindgen::convert::closures/],
];

const RUNTIME = {
  '(garbage collector)': 'runtime: garbage collection',
  '(program)': 'runtime: native, outside JS and wasm',
  '(root)': 'runtime: native, outside JS and wasm',
};

/** wasm-bindgen's generated glue (index.js, minified) and V8's crossings. */
const isGlue = (f) => /^(__wbg_|__wbindgen|__externref|wasm-to-js|js-to-wasm)|_wbg_cb_unref/.test(f.functionName) || (f.url.endsWith('/index.js') && !f.functionName.startsWith('bw_'));

/** Whether the sample's own frame is the crossing between wasm and JS. */
export const crossing = (stack) => isGlue(stack[0]);

export function classifyLedger(stack) {
  const leaf = stack[0];
  if (leaf.functionName === '(idle)') return null;
  if (RUNTIME[leaf.functionName]) return RUNTIME[leaf.functionName];
  for (const frame of stack) {
    for (const [phase, re] of LEDGER_PHASES) if (re.test(frame.functionName)) return phase;
  }
  return 'other JS and wasm';
}

/** The peer's phases, from where its own two handlers are in peer-js.mjs
 * (`lines`: the first line of the object's class and of the Worker's
 * default export, 0-based as V8 counts) and what the runtime does for them. */
export function peerClassifier(lines) {
  const side = (f) => (f.url.endsWith('index.js') && f.lineNumber >= lines.object && f.lineNumber < lines.worker ? 'object' : f.url.endsWith('index.js') && f.lineNumber >= lines.worker ? 'Worker' : null);
  // The insert is not its own phase: once V8 optimizes the object's
  // handler, \`exec\` leaves no frame of its own and counts in the handler.
  const what = { text: 'body read', parse: 'parse', stringify: 'object hop', fetch: 'object hop', idFromName: 'object hop', get: 'object hop', Response: 'answer' };
  return (stack) => {
    const leaf = stack[0];
    if (leaf.functionName === '(idle)') return null;
    if (RUNTIME[leaf.functionName]) return RUNTIME[leaf.functionName];
    const own = stack.find(side);
    if (!own) return 'other JS';
    const action = stack.slice(0, stack.indexOf(own)).map((f) => what[f.functionName]).find(Boolean);
    return `${side(own)}: ${action ?? (side(own) === 'object' ? 'handler, its insert included' : 'handler')}`;
  };
}
