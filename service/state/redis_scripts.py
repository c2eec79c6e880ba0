"""The Lua scripts of the Redis backend: each write is one atomic script, fenced by the epoch.

Keys of a session (all expire together, refreshed while a replica holds or follows it):
- `myagent_ws:session:{id}`  hash: identity, agent, epoch, owner, lease_until (ms, Redis's
                             clock), last_seq, log_bytes, state (RunState JSON)
- `myagent_ws:events:{id}`   stream of frames, entry id `<seq>-0` (fields d: JSON, t: event)
- `myagent_ws:memory:{id}`   the agent's memory (JSON)
"""

from __future__ import annotations

NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: session, events, memory. ARGV: epoch, max_events, max_bytes, ttl_s, state ('' keeps it),
# memory ('' keeps it), then seq, data, event for each frame.
# Returns the last seq held, -1 if fenced (another epoch), -2 if the record is gone.
COMMIT = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return -2 end
if epoch ~= ARGV[1] then return -1 end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[1], 'log_bytes') or '0')
for i = 7, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then  -- a retried write adds nothing: XADD with an id at or below the top fails
    redis.call('XADD', KEYS[2], seq .. '-0', 'd', ARGV[i + 1], 't', ARGV[i + 2])
    last = seq
    bytes = bytes + string.len(ARGV[i + 1])
  end
end
local n = redis.call('XLEN', KEYS[2])
local max_events, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
while n > 1 and (n > max_events or bytes > max_bytes) do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[2], oldest[1])
  bytes = bytes - string.len(oldest[2][2])
  n = n - 1
end
redis.call('HSET', KEYS[1], 'last_seq', last, 'log_bytes', bytes)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'state', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6]) end
for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ARGV[4]) end
return last
"""

# KEYS: session, events, memory. ARGV: epoch, ttl_s. Returns 1 if released.
RELEASE = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'lease_until', 0)
for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ARGV[2]) end
return 1
"""

# KEYS: session, events, memory. ARGV: epoch.
DELETE = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""

# KEYS: session, memory. ARGV: replica, lease_ms, gone (a holder found gone, whose lease is
# overridden: only that one's, never a live replica's that took the session since; '' for none).
# Returns false (no session), {'held', owner}, or {'ok', fields..., memory}.
ACQUIRE = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if owner ~= '' and owner ~= ARGV[1] and lease > now and owner ~= ARGV[3] then
  return {'held', owner}
end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)  -- every acquire fences the writes before it
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease_until', now + tonumber(ARGV[2]))
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]) or ''}
"""
)

# KEYS: session, events, memory of each held session. ARGV: replica, lease_ms, ttl_s, then the
# epoch of each. Returns {index, reason} pairs of the sessions no longer ours (1 fenced, 2 gone).
RENEW = (
    NOW_MS
    + """
local lost = {}
for i = 4, #ARGV do
  local base = (i - 4) * 3
  local epoch = redis.call('HGET', KEYS[base + 1], 'epoch')
  if not epoch then
    lost[#lost + 1] = i - 3
    lost[#lost + 1] = 2
  elseif epoch ~= ARGV[i] or redis.call('HGET', KEYS[base + 1], 'owner') ~= ARGV[1] then
    lost[#lost + 1] = i - 3
    lost[#lost + 1] = 1
  else
    redis.call('HSET', KEYS[base + 1], 'lease_until', now + tonumber(ARGV[2]))
    for k = 1, 3 do redis.call('EXPIRE', KEYS[base + k], ARGV[3]) end
  end
end
return lost
"""
)

# KEYS: session, events, memory of each followed session. ARGV: ttl_s. Returns, for each, 0 (no
# session), 1 (its owner's lease runs), 2 (no owner holds it now: lease expired, or released).
# A followed session is kept from expiring.
LEASES = (
    NOW_MS
    + """
local out = {}
for i = 1, #KEYS, 3 do
  local n = (i + 2) / 3
  if redis.call('EXISTS', KEYS[i]) == 0 then
    out[n] = 0
  else
    local owner = redis.call('HGET', KEYS[i], 'owner') or ''
    local lease = tonumber(redis.call('HGET', KEYS[i], 'lease_until') or '0')
    out[n] = (owner ~= '' and lease > now) and 1 or 2
    for k = 0, 2 do redis.call('EXPIRE', KEYS[i + k], ARGV[1]) end
  end
end
return out
"""
)
