// Calls the sidecar from Node.js with @grpc/grpc-js, as a service would.
//
// Run by tests/interop.rs against a real `governance-sidecar dev` (real
// PostgreSQL, the invoice example); the shorter example users copy is
// examples/node/invoice.js (docs/clients.md).
// The contract is loaded from proto/ at start-up with @grpc/proto-loader.
//
//   node client.js --address 127.0.0.1:50051 --proto-dir ../../../proto \
//     --corpus ../../../../shared/conformance/kernite-0.1.6-execute.jsonl [--token TOKEN]
//
// With --token, every call carries it as `authorization: Bearer TOKEN`.
//
// Exits non-zero with a message on the first mismatch; prints one line per check.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const health = require('grpc-health-check');

const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

// google.protobuf.Struct travels as {fields: {name: {numberValue: 1}, ...}}.
function toValue(value) {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case 'number': return { numberValue: value };
    case 'string': return { stringValue: value };
    case 'boolean': return { boolValue: value };
    default: return { structValue: toStruct(value) };
  }
}
function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}
function fromValue(value) {
  switch (value.kind) {
    case 'nullValue': return null;
    case 'listValue': return value.listValue.values.map(fromValue);
    case 'structValue': return fromStruct(value.structValue);
    default: return value[value.kind];
  }
}
function fromStruct(struct) {
  return Object.fromEntries(Object.entries(struct.fields).map(([k, v]) => [k, fromValue(v)]));
}

// With a token, every call carries `authorization: Bearer <token>`, as a
// caller of a sidecar with a callers file must (docs/security.md).
function connect(protoDir, address, token) {
  const definition = protoLoader.loadSync('governance/v1/governance.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [protoDir],
  });
  const { governance } = grpc.loadPackageDefinition(definition);
  const bearer = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
  const interceptors = token ? [bearer] : [];
  return new governance.v1.Governance(address, grpc.credentials.createInsecure(), { interceptors });
}

// Without the token, a call is refused before anything is decided.
async function checkUnauthenticated(governance) {
  const refused = await call(governance, 'Evaluate', { request_json: JSON.stringify(invoiceBody(10)) }).then(
    () => null,
    (error) => error,
  );
  assert.equal(refused && refused.code, grpc.status.UNAUTHENTICATED, 'a call without the token');
  ok('a call without the token is UNAUTHENTICATED');
}

// Kernite's request body, as a plain object.
function invoiceBody(amount) {
  return {
    workspace_id: 'ws_node',
    principal: { type: 'user', id: 'usr_42' },
    object_type: 'invoice',
    operation: 'create',
    payload: { amount, currency: 'USD' },
    policy_context: {
      selected_policies: [{
        policy_key: 'invoice_limit',
        rules: [{ rule_key: 'max_amount', rule_definition: { type: 'max_value', field: 'amount', max: 1000 } }],
      }],
    },
  };
}

// The same body typed: the Struct fields go through toStruct.
function invoiceRequest(amount) {
  const body = invoiceBody(amount);
  return { ...body, payload: toStruct(body.payload), policy_context: toStruct(body.policy_context) };
}

// Decides and, if approved, inserts the invoice: one transaction with its evidence.
function executeInvoice(governance, amount, key) {
  return call(governance, 'ExecuteWithEvidence', {
    request: invoiceRequest(amount),
    idempotency_key: key,
    mutation: { name: 'create_invoice' },
  });
}

function call(client, method, request) {
  const deadline = new Date(Date.now() + 5000);
  return new Promise((resolve, reject) =>
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response))));
}

function ok(what) {
  console.log(`ok: ${what}`);
}

async function checkHealth(address) {
  const definition = protoLoader.loadSync(health.protoPath, LOADER_OPTIONS);
  const Health = grpc.loadPackageDefinition(definition).grpc.health.v1.Health;
  const client = new Health(address, grpc.credentials.createInsecure());
  for (const service of ['', 'governance.v1.Governance']) {
    const { status } = await call(client, 'Check', { service });
    assert.equal(status, 'SERVING', `health of ${service || 'the server'}`);
    ok(`health of ${service || 'the server'} is SERVING`);
  }
  client.close();
}

async function checkEvaluate(governance) {
  const typed = await call(governance, 'Evaluate', { request: invoiceRequest(5000), idempotency_key: 'node-eval' });
  assert.equal(typed.decision, 'DECISION_DENIED');
  assert.deepEqual(typed.reason_codes, ['max_amount_denied']);
  ok('typed Evaluate of amount 5000 is denied by max_amount');

  const asJson = await call(governance, 'Evaluate', {
    request_json: JSON.stringify(invoiceBody(5000)),
    idempotency_key: 'node-eval',
  });
  assert.equal(asJson.trace_hash, typed.trace_hash);
  ok('JSON and typed bodies give the same trace_hash');
  assert.equal(JSON.parse(asJson.response_json).data.decision, 'denied');
  ok("response_json is Kernite's body");
}

async function checkExecuteWithEvidence(governance) {
  const key = `node-${crypto.randomUUID()}`;
  const first = await executeInvoice(governance, 250, key);
  assert.equal(first.decision.decision, 'DECISION_APPROVED');
  assert.equal(first.mutation_applied, true);
  assert.equal(first.mutation_result.rows_affected, '1');
  assert.equal(typeof fromStruct(first.mutation_result.returning[0]).id, 'number');
  assert.equal(first.mode, 'MODE_ENFORCE');
  assert.equal(first.replayed, false);
  ok('amount 250 is approved and written; RETURNING gives the invoice id');

  const again = await executeInvoice(governance, 250, key);
  assert.equal(again.replayed, true);
  assert.equal(again.evidence_id, first.evidence_id);
  assert.equal(again.decision.trace_hash, first.decision.trace_hash);
  ok('the same key replays the same evidence and decision');

  await assert.rejects(executeInvoice(governance, 5000, key), (error) => error.code === grpc.status.ALREADY_EXISTS);
  ok('reusing a key for another request is ALREADY_EXISTS');

  const denied = await executeInvoice(governance, 5000, `node-${crypto.randomUUID()}`);
  assert.equal(denied.decision.decision, 'DECISION_DENIED');
  assert.equal(denied.mutation_applied, false);
  assert.ok(BigInt(denied.evidence_id) > BigInt(first.evidence_id));
  ok('amount 5000 is denied with its own evidence row, nothing written');
}

// Sends a sample of Kernite's own cases as JSON bodies and compares the answers.
async function checkCorpus(governance, corpus, every) {
  const cases = fs.readFileSync(corpus, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  const sample = [...cases.slice(0, 7), ...cases.slice(7).filter((_, i) => i % every === 0)];
  let decisions = 0;
  let refusals = 0;
  for (const c of sample) {
    const request = { request_json: c.request_json };
    if (c.idempotency_key !== null) request.idempotency_key = c.idempotency_key;
    if (c.status === 400) {
      await assert.rejects(call(governance, 'Evaluate', request), (e) => e.code === grpc.status.INVALID_ARGUMENT, c.name);
      refusals += 1;
      continue;
    }
    const got = await call(governance, 'Evaluate', request);
    const want = c.response;
    assert.equal(got.decision, want.data.decision === 'approved' ? 'DECISION_APPROVED' : 'DECISION_DENIED', c.name);
    assert.equal(got.trace_hash, want.data.trace_hash, c.name);
    assert.equal(got.ctx_id, want.ctx_id, c.name);
    assert.deepEqual(got.reason_codes, want.data.reason_codes, c.name);
    assert.deepEqual(JSON.parse(got.response_json), want, c.name);
    decisions += 1;
  }
  assert.ok(decisions > 0 && refusals > 0);
  ok(`${decisions} decisions and ${refusals} refusals of the corpus answered like Kernite 0.1.6`);
}

async function main() {
  const { values } = parseArgs({
    options: {
      address: { type: 'string' },
      'proto-dir': { type: 'string' },
      corpus: { type: 'string' },
      every: { type: 'string', default: '10' },
      token: { type: 'string' },
    },
  });
  if (values.token) {
    const anonymous = connect(values['proto-dir'], values.address);
    await checkUnauthenticated(anonymous);
    anonymous.close();
  }
  const governance = connect(values['proto-dir'], values.address, values.token);
  await checkHealth(values.address);
  await checkEvaluate(governance);
  await checkExecuteWithEvidence(governance);
  await checkCorpus(governance, values.corpus, Number(values.every));
  governance.close();
}

main().catch((error) => {
  console.error(`FAILED: ${error.stack || error}`);
  process.exit(1);
});
