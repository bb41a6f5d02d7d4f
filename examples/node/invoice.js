// Governs invoices through the sidecar, from Node.js with @grpc/grpc-js.
//
//   node invoice.js [ADDRESS]    (default 127.0.0.1:50051, e.g. `governance-sidecar dev`)
//
// The contract is loaded from the repository's proto/ when it starts: no stubs to generate.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const definition = protoLoader.loadSync('governance/v1/governance.proto', {
  includeDirs: [path.join(__dirname, '..', '..', 'proto')],
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const { Governance } = grpc.loadPackageDefinition(definition).governance.v1;

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

// Kernite's request body for an invoice, typed: its payload is a Struct.
function invoice(amount) {
  return {
    workspace_id: 'ws_node',
    principal: { type: 'user', id: 'usr_42' },
    object_type: 'invoice',
    operation: 'create',
    payload: toStruct({ amount, currency: 'USD' }),
  };
}

// A unary call as a promise, with a deadline.
function call(client, method, request) {
  const deadline = new Date(Date.now() + 5000);
  return new Promise((resolve, reject) =>
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response))));
}

async function main(address) {
  const governance = new Governance(address, grpc.credentials.createInsecure());

  // May this happen? The sidecar's policy bundle decides: invoices up to 1000.
  const answer = await call(governance, 'Evaluate', { request: invoice(5000) });
  console.log('Evaluate 5000:', answer.decision, answer.reason_codes);

  // Decides and, if approved, inserts the invoice: one transaction with its evidence row.
  const execute = (amount, key) => call(governance, 'ExecuteWithEvidence', {
    request: invoice(amount), idempotency_key: key, mutation: { name: 'create_invoice' },
  });

  const key = `node-${crypto.randomUUID()}`;
  const written = await execute(250, key);
  const invoiceId = written.mutation_result.returning[0].fields.id.numberValue;
  console.log('ExecuteWithEvidence 250:', written.decision.decision, 'invoice', invoiceId, 'evidence', written.evidence_id);
  const again = await execute(250, key);
  console.log('the same key again: replayed', again.replayed, 'evidence', again.evidence_id);
  try {
    await execute(5000, key);
  } catch (error) {
    console.log('the same key, another amount:', grpc.status[error.code]);
  }
  const denied = await execute(5000, `node-${crypto.randomUUID()}`);
  console.log('ExecuteWithEvidence 5000:', denied.decision.decision, 'applied', denied.mutation_applied,
    'evidence', denied.evidence_id);
  governance.close();
}

main(process.argv[2] || '127.0.0.1:50051').catch((error) => {
  console.error(error.message);
  process.exit(1);
});
