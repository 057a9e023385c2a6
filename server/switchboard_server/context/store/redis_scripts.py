"""Lua scripts of the Redis backend: each write is one atomic script (made idempotent
under a request key by :func:`switchboard_server.redis_writes.idempotent`).

With ``appendonly yes`` + ``appendfsync always`` Redis fsyncs the script's effects
before it replies, so an acknowledged write survives a crash of Redis too. The
ingest/delete scripts touch keys they compute, so the backend needs a single Redis
(or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

# KEYS: working, episodic, semantic lists, seq counter, session generation.
# ARGV: caps (3), then per entry: type index (1-3), JSON payload.
APPEND_MEMORY = """
local n = (#ARGV - 3) / 2
local touched = {}
for i = 0, n - 1 do
  local t = tonumber(ARGV[4 + 2 * i])
  local seq = redis.call('INCR', KEYS[4])
  redis.call('RPUSH', KEYS[t], seq .. ' ' .. ARGV[5 + 2 * i])
  touched[t] = true
end
local out = {}
for t = 1, 3 do
  local evicted = 0
  if touched[t] then
    local len = redis.call('LLEN', KEYS[t])
    local cap = tonumber(ARGV[t])
    if len > cap then
      evicted = len - cap
      redis.call('LTRIM', KEYS[t], -cap, -1)
    end
  end
  out[t] = evicted
  out[t + 3] = redis.call('LLEN', KEYS[t])
end
redis.call('INCR', KEYS[5])
return out
"""

# KEYS: lists to clear..., session generation (last).
CLEAR_MEMORY = """
local deleted = 0
for i = 1, #KEYS - 1 do
  deleted = deleted + redis.call('LLEN', KEYS[i])
  redis.call('DEL', KEYS[i])
end
redis.call('INCR', KEYS[#KEYS])
return deleted
"""

_DROP_DOCUMENT = """
local function drop(P, doc_id)
  local key = P .. 'doc:' .. doc_id
  local old = redis.call('HGET', key, 'passages')
  if not old then return 0 end
  for _, pid in ipairs(cjson.decode(old)) do
    redis.call('DEL', P .. 'p:' .. pid)
    redis.call('HINCRBY', P .. 'kb', 'passages', -1)
  end
  redis.call('DEL', key)
  redis.call('HINCRBY', P .. 'kb', 'documents', -1)
  return 1
end
"""

# ARGV: key prefix, JSON list of documents with their passages. Returns replaced count.
# Each document enters the document log (``kb:log``, document -> the sequence of its
# latest change) with the next sequence (``kb:seq``): one per document, so a reader
# can page through the log by sequence.
INGEST = (
    _DROP_DOCUMENT
    + """
local P = ARGV[1]
local replaced = 0
local docs = cjson.decode(ARGV[2])
local seq = redis.call('INCRBY', P .. 'kb:seq', #docs) - #docs
for _, doc in ipairs(docs) do
  replaced = replaced + drop(P, doc.id)
  local pids = {}
  for _, p in ipairs(doc.passages) do
    table.insert(pids, p.id)
    redis.call('HSET', P .. 'p:' .. p.id, 'document_id', doc.id, 'title', doc.title,
      'content', p.content, 'metadata', doc.metadata,
      'created_at', doc.created_at)
  end
  redis.call('HINCRBY', P .. 'kb', 'passages', #pids)
  redis.call('HSET', P .. 'doc:' .. doc.id, 'title', doc.title, 'metadata', doc.metadata,
    'created_at', doc.created_at, 'passages', cjson.encode(pids))
  redis.call('HINCRBY', P .. 'kb', 'documents', 1)
  seq = seq + 1
  redis.call('ZADD', P .. 'kb:log', seq, doc.id)
end
redis.call('INCR', P .. 'kbgen')
return replaced
"""
)

# ARGV: key prefix, document ids... Returns the ids that did not exist.
DELETE = (
    _DROP_DOCUMENT
    + """
local P = ARGV[1]
local missing = {}
for i = 2, #ARGV do
  if drop(P, ARGV[i]) == 0 then
    table.insert(missing, ARGV[i])
  else
    redis.call('ZADD', P .. 'kb:log', redis.call('INCR', P .. 'kb:seq'), ARGV[i])
  end
end
redis.call('INCR', P .. 'kbgen')
return missing
"""
)
