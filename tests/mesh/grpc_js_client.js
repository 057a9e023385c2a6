// A default @grpc/grpc-js client (no options) for tests/mesh/test_mesh_wire.py.
//
// Reads a JSON list of calls on stdin: {target, path, body_hex, metadata, repeat}; sends
// each request's raw bytes `repeat` times (unary) and prints one JSON line per call:
// {index, code, details_bytes, details_bin_bytes, reason_seen, correlation}.
'use strict';
const grpc = require('@grpc/grpc-js');

const DEADLINE_MS = 10000;
const clients = new Map();

function client(target) {
  if (!clients.has(target)) {
    clients.set(target, new grpc.Client(target, grpc.credentials.createInsecure()));
  }
  return clients.get(target);
}

function call(c) {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(c.metadata || {})) metadata.set(key, value);
  const raw = (bytes) => bytes;
  return new Promise((resolve) => {
    client(c.target).makeUnaryRequest(
      c.path, raw, raw, Buffer.from(c.body_hex, 'hex'), metadata,
      { deadline: Date.now() + DEADLINE_MS },
      (err) => {
        if (!err) return resolve({ code: 0 });
        const details = err.metadata.get('grpc-status-details-bin');
        resolve({
          code: err.code,
          details_bytes: Buffer.byteLength(err.details),
          details_bin_bytes: details.length ? details[0].length : 0,
          // the ErrorInfo reason is plain text inside the serialized google.rpc.Status
          status_details: details.length ? details[0].toString('latin1') : '',
          correlation: err.metadata.get('x-correlation-id').length > 0,
        });
      });
  });
}

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const calls = JSON.parse(input);
  for (const [index, c] of calls.entries()) {
    for (let i = 0; i < (c.repeat || 1); i++) {
      console.log(JSON.stringify({ index, ...(await call(c)) }));
    }
  }
  for (const each of clients.values()) each.close();
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
