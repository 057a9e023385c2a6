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
    local pkey = P .. 'p:' .. pid
    local tf = redis.call('HGET', pkey, 'tf')
    local len = tonumber(redis.call('HGET', pkey, 'length') or '0')
    if tf then
      for term, _ in pairs(cjson.decode(tf)) do
        redis.call('ZREM', P .. 't:' .. term, pid)
      end
    end
    redis.call('HINCRBY', P .. 'kb', 'passages', -1)
    redis.call('HINCRBY', P .. 'kb', 'length', -len)
    redis.call('HDEL', P .. 'kb:len', pid)
    redis.call('DEL', pkey)
  end
  redis.call('DEL', key)
  redis.call('HINCRBY', P .. 'kb', 'documents', -1)
  return 1
end
"""

# ARGV: key prefix, JSON list of documents with their passages. Returns replaced count.
INGEST = (
    _DROP_DOCUMENT
    + """
local P = ARGV[1]
local replaced = 0
for _, doc in ipairs(cjson.decode(ARGV[2])) do
  replaced = replaced + drop(P, doc.id)
  local pids = {}
  for _, p in ipairs(doc.passages) do
    table.insert(pids, p.id)
    local tf = cjson.encode(p.tf)
    redis.call('HSET', P .. 'p:' .. p.id, 'document_id', doc.id, 'title', doc.title,
      'content', p.content, 'length', p.length, 'tf', tf, 'metadata', doc.metadata,
      'created_at', doc.created_at)
    for term, count in pairs(p.tf) do
      redis.call('ZADD', P .. 't:' .. term, count, p.id)
    end
    redis.call('HINCRBY', P .. 'kb', 'passages', 1)
    redis.call('HINCRBY', P .. 'kb', 'length', p.length)
    redis.call('HSET', P .. 'kb:len', p.id, p.length)
  end
  redis.call('HSET', P .. 'doc:' .. doc.id, 'title', doc.title, 'metadata', doc.metadata,
    'created_at', doc.created_at, 'passages', cjson.encode(pids))
  redis.call('HINCRBY', P .. 'kb', 'documents', 1)
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
  if drop(P, ARGV[i]) == 0 then table.insert(missing, ARGV[i]) end
end
redis.call('INCR', P .. 'kbgen')
return missing
"""
)
