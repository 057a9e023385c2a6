// gRPC-Web over fetch, binary mode (application/grpc-web+proto), as the edge's
// grpc_web filter speaks it: every message is a frame (1 flag byte, a 4-byte big-endian
// length, the bytes); the trailers come as the last frame (flag 0x80), "key:value"
// lines. A call that fails before any message may instead carry grpc-status in the
// response headers (trailers-only). https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

export const CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];

const TRAILER_FLAG = 0x80;

export class GrpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.codeName = CODES[code] ?? `CODE_${code}`;
  }
}

function frame(bytes) {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function parseTrailers(bytes) {
  const trailers = {};
  for (const line of new TextDecoder().decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return trailers;
}

function percentDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

// HTTP status of a reply that is not gRPC at all (e.g. no route) -> gRPC code.
function httpToGrpc(status) {
  return { 400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14 }[status] ?? 2;
}

// The edge's bearer token. `switchboard up` prints the page's address with the
// development token in the fragment (#token=...), which the browser never sends; the
// page keeps it for this tab and takes it out of the address bar.
const TOKEN_KEY = "switchboard.token";

export function adoptToken() {
  const match = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

// Calls a server-streaming (or unary) method; yields each response message's bytes.
// Throws GrpcError when the call ends with a status other than OK.
export async function* call(path, requestBytes, { timeoutMs = 30000, signal } = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      "x-user-agent": "switchboard-web/0.1",
      "grpc-timeout": `${Math.max(1, Math.round(timeoutMs))}m`,
      ...authorization(),
    },
    body: frame(requestBytes),
    signal,
  });
  if (!response.ok) throw new GrpcError(httpToGrpc(response.status), `HTTP ${response.status}`);
  let status = response.headers.get("grpc-status");
  let message = response.headers.get("grpc-message") ?? "";
  if (response.body) {
    const reader = response.body.getReader();
    let buffered = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffered = concat(buffered, value);
      while (buffered.length >= 5) {
        const length = new DataView(buffered.buffer, buffered.byteOffset).getUint32(1);
        if (buffered.length < 5 + length) break;
        const flags = buffered[0];
        const payload = buffered.slice(5, 5 + length);
        buffered = buffered.slice(5 + length);
        if (flags & TRAILER_FLAG) {
          const trailers = parseTrailers(payload);
          status = trailers["grpc-status"] ?? status;
          message = trailers["grpc-message"] ?? message;
        } else {
          yield payload;
        }
      }
      if (done) break;
    }
  }
  if (status === null) throw new GrpcError(13, "the call ended without a gRPC status");
  if (status !== "0") throw new GrpcError(Number(status), percentDecode(message));
}

// Calls a unary method; returns the response message's bytes.
export async function unary(path, requestBytes, options) {
  let reply = null;
  for await (const bytes of call(path, requestBytes, options)) reply = bytes;
  if (reply === null) throw new GrpcError(13, "a unary call returned no message");
  return reply;
}
