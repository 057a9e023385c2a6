// The chat page: sends each message with ChatStream over gRPC-Web and shows the reply
// as it streams, then the intent with its confidence, the cited sources and the stage
// timings. The session id lives in localStorage, so a reload continues the conversation
// (its earlier turns are read back with GetConversation). Each message goes out with
// its own request_id (AIP-155), and every resend of it (after UNAVAILABLE or a broken
// connection, automatically, or with the card's retry button) carries the same one: the
// server answers a resend with the turn it committed, never records a second.
import { adoptToken, call, unary, GrpcError } from "/grpc-web.js";

const SERVICE = "/switchboard.orchestration.v1.OrchestrationService";
const PACKAGE = "switchboard.orchestration.v1";
const SESSION_KEY = "switchboard.sessionId";
const HISTORY_PAGE_SIZE = 100;
const HISTORY_MAX_PAGES = 20;
const TO_OBJECT = { enums: String, longs: Number, defaults: true, oneofs: true };
const STAGES = {
  STAGE_CLASSIFY: "classify",
  STAGE_RETRIEVE: "retrieve",
  STAGE_COMPOSE: "compose",
  STAGE_REMEMBER: "remember",
};

// Resends of a failed message: UNAVAILABLE (no replica answered, or the one that did
// went away) and a broken connection; others (a refusal, a timeout) are shown at once.
const RETRYABLE = new Set([14]);
const MAX_ATTEMPTS = 3;
const RETRY_BASE_MS = 250;

const $ = (id) => document.getElementById(id);
const sleep = (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs));
const retryable = (error) => !(error instanceof GrpcError) || RETRYABLE.has(error.code);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// replaceChildren without the absent (null) ones.
const fill = (node, ...children) => node.replaceChildren(...children.filter(Boolean));

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A random (version 4) UUID; crypto.randomUUID exists only on secure origins.
function newRequestId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

function sessionId() {
  let id = localStorage.getItem(SESSION_KEY);
  if (!id) {
    id = newSessionId();
    localStorage.setItem(SESSION_KEY, id);
  }
  return id;
}

const percent = (x) => `${Math.round(x * 100)}%`;
const ms = (x) => (x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`);

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function scrollDown() {
  const transcript = $("transcript");
  transcript.scrollTop = transcript.scrollHeight;
}

// One exchange in the transcript: the user's bubble and the assistant's card.
class TurnView {
  constructor(message) {
    this.reply = el("p", { class: "reply", "data-testid": "reply" });
    this.intent = el("div", { class: "intent", "data-testid": "intent" });
    this.stages = el("ol", { class: "stages", "data-testid": "timings" });
    this.sources = el("ol", { class: "sources", "data-testid": "sources" });
    this.meta = el("div", { class: "meta muted", "data-testid": "meta" });
    this.stageRows = new Map();
    this.chunks = 0;
    this.card = el(
      "article",
      { class: "assistant", "data-testid": "turn", "data-state": "streaming" },
      this.reply,
      this.intent,
      el("details", { class: "panel", open: "" }, el("summary", { text: "Stages" }), this.stages),
      el("details", { class: "panel", open: "" }, el("summary", { text: "Sources" }), this.sources),
      this.meta,
    );
    $("transcript").append(el("div", { class: "user", "data-testid": "user-message", text: message }), this.card);
    scrollDown();
  }

  // Back to an empty card, for a resend of the message.
  restart() {
    this.reply.textContent = "";
    this.stages.replaceChildren();
    this.stageRows.clear();
    this.chunks = 0;
    delete this.card.dataset.chunks;
    for (const node of this.card.querySelectorAll(".error, .retry")) node.remove();
    this.card.dataset.state = "streaming";
  }

  stage(event) {
    const name = STAGES[event.stage] ?? event.stage;
    let row = this.stageRows.get(name);
    if (!row) {
      row = el("li", { "data-stage": name });
      this.stageRows.set(name, row);
      this.stages.append(row);
    }
    const status = event.status.replace("STAGE_STATUS_", "").toLowerCase();
    row.dataset.status = status;
    fill(row,
      el("span", { class: "stage-name", text: name }),
      el("span", { class: "stage-time", text: status === "started" ? "…" : `${status} · ${ms(event.durationMs)}` }),
    );
  }

  chunk(chunk) {
    this.chunks += 1;
    this.card.dataset.chunks = String(this.chunks);
    this.reply.textContent += chunk.text;
    scrollDown();
  }

  summary(turn) {
    this.reply.textContent = turn.reply;
    const intent = turn.intent ?? {};
    const label = intent.outOfScope ? "out of scope" : intent.intent;
    fill(this.intent,
      el("span", { class: "chip", "data-testid": "intent-name", text: label }),
      el("span", { class: "confidence", "data-testid": "confidence", text: percent(intent.confidence ?? 0) }),
      intent.fallback ? el("span", { class: "chip warn", text: "fallback" }) : null,
      ...(intent.alternatives ?? [])
        .filter((alt) => alt.intent !== intent.intent)
        .slice(0, 2)
        .map((alt) => el("span", { class: "alt muted", text: `or ${alt.intent} ${percent(alt.confidence)}` })),
    );
    this.stages.replaceChildren();
    const longest = Math.max(1e-3, ...turn.timings.map((t) => t.durationMs));
    for (const timing of turn.timings) {
      const name = STAGES[timing.stage] ?? timing.stage;
      const bar = el("span", { class: "bar" });
      bar.style.width = `${Math.max(2, (100 * timing.durationMs) / longest)}%`;
      this.stages.append(
        el("li", { "data-stage": name, "data-status": "finished" },
          el("span", { class: "stage-name", text: name }),
          el("span", { class: "bar-track" }, bar),
          el("span", { class: "stage-time", text: ms(timing.durationMs) })),
      );
    }
    this.sources.replaceChildren();
    for (const source of turn.sources) {
      const kind = source.kind.replace("SOURCE_KIND_", "").toLowerCase();
      this.sources.append(
        el("li", { class: source.cited ? "cited" : "", "data-testid": "source", "data-kind": kind },
          el("span", { class: "chip", text: kind }),
          el("span", { class: "source-title", text: source.title || (kind === "memory" ? "earlier in this conversation" : source.id) }),
          el("span", { class: "muted", text: ` ${percent(source.relevance)}${source.cited ? " · cited" : ""}` }),
          el("div", { class: "source-content", text: source.content })),
      );
    }
    if (!turn.sources.length) this.sources.append(el("li", { class: "none muted", text: "none" }));
    const degraded = turn.degraded.map((d) => `${d.dependency.replace("DEPENDENCY_", "").toLowerCase()} ${d.reason}`);
    fill(this.meta,
      el("span", { "data-testid": "turn-index", text: `turn ${turn.turnIndex + 1}` }),
      el("span", { text: ` · ${ms(turn.totalMs)} total` }),
      el("span", { text: ` · ${turn.correlationId}` }),
      degraded.length ? el("span", { class: "warn", "data-testid": "degraded", text: ` · degraded: ${degraded.join(", ")}` }) : null,
    );
    this.card.dataset.turnIndex = String(turn.turnIndex);
    this.card.dataset.state = "done";
    scrollDown();
  }

  fail(error, retry) {
    const text = error instanceof GrpcError ? `${error.codeName}: ${error.message}` : String(error);
    this.card.append(el("p", { class: "error", "data-testid": "error", text }));
    if (retry) {
      const button = el("button", { type: "button", class: "retry", "data-testid": "retry", text: "Retry" });
      button.addEventListener("click", retry);
      this.card.append(button);
    }
    this.card.dataset.state = "error";
  }
}

async function main() {
  adoptToken();
  const descriptor = await (await fetch("/orchestration.json")).json();
  const root = protobuf.Root.fromJSON(descriptor);
  const type = (name) => root.lookupType(`${PACKAGE}.${name}`);
  const ChatStreamRequest = type("ChatStreamRequest");
  const ChatStreamResponse = type("ChatStreamResponse");
  const GetConversationRequest = type("GetConversationRequest");
  const GetConversationResponse = type("GetConversationResponse");
  const encode = (T, value) => T.encode(T.create(value)).finish();

  let session = sessionId();

  async function loadHistory() {
    $("transcript").replaceChildren();
    $("session-id").textContent = session;
    let pageToken = "";
    for (let page = 0; page < HISTORY_MAX_PAGES; page++) {
      const request = encode(GetConversationRequest, { sessionId: session, pageSize: HISTORY_PAGE_SIZE, pageToken });
      const reply = GetConversationResponse.toObject(
        GetConversationResponse.decode(await unary(`${SERVICE}/GetConversation`, request)), TO_OBJECT);
      for (const turn of reply.turns) {
        const view = new TurnView(turn.userMessage);
        view.summary({ ...turn, sources: [], timings: [], degraded: [], totalMs: 0, turnIndex: turn.index });
        view.meta.firstChild.textContent = `turn ${turn.index + 1} (earlier)`;
      }
      pageToken = reply.nextPageToken;
      if (!pageToken) break;
    }
  }

  async function stream(view, request) {
    for await (const bytes of call(`${SERVICE}/ChatStream`, request)) {
      const event = ChatStreamResponse.toObject(ChatStreamResponse.decode(bytes), TO_OBJECT);
      if (event.event === "stage") view.stage(event.stage);
      else if (event.event === "replyChunk") view.chunk(event.replyChunk);
      else if (event.event === "summary") view.summary(event.summary);
    }
    if (view.card.dataset.state !== "done") throw new GrpcError(13, "the stream ended without a summary");
  }

  // Sends the request (resending it as it is, request_id included, while retryable).
  async function deliver(view, request) {
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1 || view.card.dataset.state !== "streaming") view.restart();
      try {
        await stream(view, request);
        setStatus("ready");
        return;
      } catch (error) {
        if (attempt < MAX_ATTEMPTS && retryable(error)) {
          setStatus(`resending… (${error.message})`);
          await sleep(RETRY_BASE_MS * 2 ** (attempt - 1));
          continue;
        }
        view.fail(error, async () => {
          setStatus("resending…");
          await deliver(view, request);
        });
        setStatus("the last message failed", true);
        return;
      }
    }
  }

  async function send(message) {
    const view = new TurnView(message);
    const requestId = newRequestId();
    view.card.dataset.requestId = requestId;
    await deliver(view, encode(ChatStreamRequest, { message, sessionId: session, requestId }));
  }

  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("message");
    const message = input.value.trim();
    if (!message) return;
    input.value = "";
    $("send").disabled = true;
    setStatus("thinking…");
    await send(message);
    $("send").disabled = false;
    input.focus();
  });

  $("new-session").addEventListener("click", async () => {
    session = newSessionId();
    localStorage.setItem(SESSION_KEY, session);
    await loadHistory();
    $("message").focus();
  });

  try {
    await loadHistory();
    setStatus("ready");
  } catch (error) {
    setStatus(`could not read the conversation: ${error.message}`, true);
  }
  $("send").disabled = false;
}

main().catch((error) => setStatus(`could not start: ${error.message}`, true));
