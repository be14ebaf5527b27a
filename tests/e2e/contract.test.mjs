// The OpenAPI document is exact, as a generic OpenAPI fuzzer holds it:
//  - every query and path parameter gets values from one generic pool
//    (boundary integers, numbers, date-times, empty and odd strings, and
//    the schema's own enum values); a value the parameter's schema accepts
//    is never refused as invalid (400), and its answer is documented and
//    matches its schema; a value the schema refuses gets 400;
//  - a method the document does not declare for a path gets 405 with an
//    `Allow` header naming exactly the declared ones (never served as GET).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, API } from './harness.mjs';
import { Contract } from '../support/openapi.mjs';
import { startFakeBandwidth } from '../support/fake-bandwidth.mjs';

const ACCOUNT = '9900000';
let w;
let fake;
let contract;
before(async () => {
  fake = await startFakeBandwidth();
  w = await startWorker({
    vars: {
      BW_ACCOUNT_ID: ACCOUNT, BW_APPLICATION_ID: 'app', BW_CLIENT_ID: 'contract', BW_CLIENT_SECRET: 'contract-secret',
      BANDWIDTH_API_BASE: `${fake.url}/api/v2`, BANDWIDTH_TOKEN_URL: `${fake.url}/api/v1/oauth2/token`,
    },
  });
  contract = new Contract(await (await fetch(`${w.url}/openapi.json`)).json());
});
after(async () => { await w?.stop(); await fake?.close(); });

/** Values a generic fuzzer tries, whatever the parameter. */
function pool(schema) {
  const numbers = [-1, 0, 1, 2, 5, 100, 999, 1000, 1001, 4294967295, 4294967296, 2 ** 53 - 1, -(2 ** 53 - 1), 1.5];
  const strings = [
    '', ' ', 'a', 'abcde', 'x,y,zzzzz', '%', '%zz', 'héllo wörld', '+', '+15', '+1555', '+15551234567',
    '+05551234567', '+155512345678901', '+1555123456789012', '15551234567', '+15551234567,+15559876543',
    ' +15551234567 , +15559876543 ', 'true', 'false', 'null', '2026-11-20T15:04:07Z', '2026-11-20T15:04:07.123+05:30',
    '2026-11-20t15:04:07z', '2026-11-20 15:04:07Z', '2026-11-20T15:04:07+0530', '2026-11-20T15:04:07-02',
    '2026-02-30T00:00:00Z', '2026-11-20', 'yesterday', 'receiveTime', 'receiveTime:desc', 'messageId:sideways',
    // A URL (a webhook target's); port 9 refuses every connection.
    'http://127.0.0.1:9/hook', 'ftp://127.0.0.1/hook', 'http://',
  ];
  return [...numbers, ...strings, null, true, ...(schema.enum ?? [])];
}

/** A candidate as the request carries it, and whether the schema accepts it
 * (a query value is text: an integer schema takes the text of an integer). */
function classify(schema, value) {
  if (schema.type === 'integer' || schema.type === 'number') {
    const n = typeof value === 'number' ? value : (/^-?\d+(\.\d+)?$/.test(value) ? Number(value) : NaN);
    return { text: String(value), valid: contract.accepts(schema, Number.isNaN(n) ? value : n) };
  }
  const text = String(value);
  return { text, valid: contract.accepts(schema, text) };
}

/** What the other parameters hold while one varies: required ones only. */
const BASELINE = {
  '/conversations': { number: '+15551110000', with: '+15552220000' },
};
const PATH_VALUES = { accountId: ACCOUNT, id: 'no-such-message', messageId: 'no-such-message', name: 'x.png', number: '+15551234567' };
// Not fuzzed here: `GET /live` answers only an upgrade (a fetch cannot make
// one; operability.test.mjs holds it), and the send's header is a send.
const SKIP = new Set(['GET /live', 'POST /api/v2/users/{accountId}/messages', 'OPTIONS /api/v2/users/{accountId}/messages',
  'POST /api/v2/users/{accountId}/messages/multiChannel', 'OPTIONS /api/v2/users/{accountId}/messages/multiChannel']);

/** A value `schema` accepts, built from the same pool a field at a time
 * (an object gets its required properties), as a generic fuzzer's first
 * valid example would be. */
function sample(schema) {
  schema = contract.resolveRef(schema);
  if (schema.type === 'object') {
    const out = {};
    for (const name of schema.required ?? []) out[name] = sample(schema.properties[name]);
    // One of `anyOf`'s alternatives, when the required fields alone are not enough.
    for (const alt of contract.accepts(schema, out) ? [] : (schema.anyOf ?? []).slice(0, 1)) {
      for (const name of alt.required ?? []) out[name] = sample({ ...schema.properties[name], ...alt.properties?.[name] });
    }
    return out;
  }
  if (schema.type === 'array') {
    // The fewest items allowed, each a different valid value.
    const items = contract.resolveRef(schema.items ?? {});
    const valid = [...new Set(pool(items).filter((v) => contract.accepts(items, v)))];
    return valid.slice(0, schema.minItems ?? 0);
  }
  const found = pool(schema).find((v) => v !== null && contract.accepts(schema, v) && (typeof v !== 'string' || v.trim() !== ''));
  assert.notEqual(found, undefined, `no value in the pool for ${JSON.stringify(schema)}`);
  return found;
}

/** The body an operation requires, sampled from its schema; none if optional. */
function bodyFor(op) {
  const json = op.requestBody?.required && op.requestBody.content?.['application/json'];
  if (!json) return undefined;
  const body = sample(json.schema);
  assert.ok(contract.accepts(json.schema, body), `sampled body ${JSON.stringify(body)}`);
  return JSON.stringify(body);
}

function requestFor(template, params, vary, text) {
  let path = template;
  const query = new URLSearchParams();
  for (const p of params) {
    const value = p.name === vary ? text : (p.in === 'path' ? PATH_VALUES[p.name] : BASELINE[template]?.[p.name]);
    if (value === undefined) continue;
    if (p.in === 'path') path = path.replace(`{${p.name}}`, encodeURIComponent(value));
    else if (p.in === 'query') query.set(p.name, value);
  }
  const qs = query.toString().replace(/\+/g, '%20');
  return qs ? `${path}?${qs}` : path;
}

test('every schema-valid parameter value is served, and every invalid one refused with 400', async () => {
  const mismatches = [];
  let tried = 0;
  for (const [template, item] of Object.entries(contract.doc.paths)) {
    for (const method of contract.methodsOf(template)) {
      if (SKIP.has(`${method} ${template}`)) continue;
      const op = item[method.toLowerCase()];
      const params = (op.parameters ?? []).map((p) => contract.resolveRef(p));
      const body = bodyFor(op);
      for (const param of params.filter((p) => p.in === 'query' || p.in === 'path')) {
        // An opaque token cannot be told valid by its schema: any refusal of
        // it is documented, which `checked` holds.
        const opaque = /token|cursor/i.test(param.name);
        for (const candidate of pool(param.schema).filter((v) => v !== null && v !== true)) {
          const { text, valid } = classify(param.schema, candidate);
          if (param.in === 'path' && (text === '' || text.includes('/'))) continue; // not a path segment
          const path = requestFor(template, params, param.name, text);
          const res = await fetch(`${w.url}${path}`, { method, headers: { ...API, 'Content-Type': 'application/json' }, body });
          tried++;
          const what = `${method} ${template} ${param.name}=${JSON.stringify(text)} (${valid ? 'valid' : 'invalid'} by the schema): ${res.status}`;
          try {
            await contract.checked(method, path, res);
          } catch (e) {
            mismatches.push(`${what}: ${e.message.split('\n')[0]}`);
            continue;
          }
          if (opaque) continue;
          if (valid && res.status === 400) mismatches.push(`${what}: a schema-valid value was refused`);
          if (!valid && res.status !== 400) mismatches.push(`${what}: a schema-invalid value was not refused`);
        }
      }
    }
  }
  assert.ok(tried > 400, `only ${tried} requests`);
  assert.deepEqual(mismatches, [], `${mismatches.length} of ${tried} requests disagree with the document`);
});

test('every schema-valid body field is served, and every invalid one refused with 400', async () => {
  const mismatches = [];
  let tried = 0;
  for (const [template, item] of Object.entries(contract.doc.paths)) {
    for (const method of contract.methodsOf(template)) {
      const op = item[method.toLowerCase()];
      const schema = contract.resolveRef(op.requestBody?.content?.['application/json']?.schema ?? {});
      if (schema.type !== 'object' || !schema.properties) continue;
      const params = (op.parameters ?? []).map((p) => contract.resolveRef(p));
      const path = requestFor(template, params);
      for (const [field, fieldSchema] of Object.entries(schema.properties)) {
        for (const candidate of pool(contract.resolveRef(fieldSchema))) {
          const body = { ...sample(schema), [field]: candidate };
          const valid = contract.accepts(schema, body);
          const res = await fetch(`${w.url}${path}`, { method, headers: { ...API, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
          tried++;
          const what = `${method} ${template} ${field}=${JSON.stringify(candidate)} (${valid ? 'valid' : 'invalid'} by the schema): ${res.status}`;
          try {
            await contract.checked(method, path, res);
          } catch (e) {
            mismatches.push(`${what}: ${e.message.split('\n')[0]}`);
            continue;
          }
          // A refusal no schema can state (a time that must be in the
          // future) is named by the document itself (`x-refused-when`).
          if (valid && res.status === 400 && !fieldSchema['x-refused-when']) mismatches.push(`${what}: a schema-valid body was refused`);
          if (!valid && res.status !== 400) mismatches.push(`${what}: a schema-invalid body was not refused`);
        }
      }
    }
  }
  assert.ok(tried > 200, `only ${tried} requests`);
  assert.deepEqual(mismatches, [], `${mismatches.length} of ${tried} requests disagree with the document`);
});

test('an undeclared method gets 405 with Allow, on every path', async () => {
  const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'QUERY', 'PROPFIND'];
  const wrong = [];
  for (const template of Object.keys(contract.doc.paths)) {
    const declared = contract.methodsOf(template);
    const path = template.replace(/\{([^}]+)\}/g, (_, n) => encodeURIComponent(PATH_VALUES[n]));
    for (const method of methods.filter((m) => !declared.includes(m))) {
      const res = await fetch(`${w.url}${path}`, { method, headers: API, body: method === 'GET' ? undefined : '{}' });
      const allow = (res.headers.get('allow') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      // HEAD rides with GET, implicitly.
      const expected = declared.filter((m) => m !== 'HEAD');
      const ok = res.status === 405 && expected.every((m) => allow.includes(m)) && allow.every((m) => expected.includes(m) || m === 'HEAD');
      if (!ok) wrong.push(`${method} ${template}: ${res.status}, Allow: ${allow.join(', ') || '(none)'}; expected 405, Allow: ${expected.join(', ')}`);
      const body = await res.text();
      if (res.status === 405) assert.equal(JSON.parse(body).type, 'method-not-allowed', `${method} ${template}: ${body}`);
    }
  }
  assert.deepEqual(wrong, []);
});
