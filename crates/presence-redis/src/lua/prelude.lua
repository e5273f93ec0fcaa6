-- Shared by every script (prepended to each). KEYS are the same for every script, so each
-- call declares every key it touches (Redis Cluster needs that) and they share one hash tag:
--   KEYS[1] seq       STRING  the cluster's sequence number (INCR per event)
--   KEYS[2] nodes     ZSET    incarnation -> lease expiry (Redis TIME, ms)
--   KEYS[3] count     HASH    user -> number of live incarnations that have the user up
--   KEYS[4] names     HASH    user -> name, for every user online (up somewhere, or in grace)
--   KEYS[5] grace     ZSET    user -> grace deadline (ms), for users up nowhere but still online
--   KEYS[6] lastdown  HASH    user -> time of the last Down (unix ms), while in grace
--   KEYS[7] registered STRING the number of registered accounts
--   KEYS[8] info      HASH    incarnation -> node name (diagnostics)
--   KEYS[9] incr      STRING  incarnation counter
--   KEYS[10]          the one per-call key: a node's SET of users, or a writer's op mark
-- ARGV[1] is always the channel events are published on.
local K_SEQ, K_NODES, K_COUNT, K_NAMES, K_GRACE, K_LAST, K_REG, K_INFO, K_INCR =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local CHAN = ARGV[1]

-- Redis's clock, in ms: every deadline in these scripts is on it, never on a node's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A number as an integer string (Redis would format a Lua number argument as a float).
local function str(x)
  if type(x) == 'number' then return string.format('%d', x) end
  return x
end

-- Numbers the event and publishes it as "<seq> <event>".
local function emit(msg)
  local s = redis.call('INCR', K_SEQ)
  redis.call('PUBLISH', CHAN, str(s) .. ' ' .. msg)
  return s
end

-- The incarnation holds a lease that has not expired.
local function live(inc, now)
  local e = redis.call('ZSCORE', K_NODES, inc)
  return e ~= false and tonumber(e) > now
end

-- The lowest score of a ZSET, or -1.
local function first_score(key)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] then return tonumber(r[2]) end
  return -1
end

local function earliest(a, b)
  if a < 0 then return b end
  if b < 0 or a < b then return a end
  return b
end

-- The user goes offline now (if online), last seen at `seen`.
local function offline(u, seen)
  local name = redis.call('HGET', K_NAMES, u)
  if not name then return 0 end
  redis.call('HDEL', K_NAMES, u)
  redis.call('ZREM', K_GRACE, u)
  redis.call('HDEL', K_LAST, u)
  emit('off ' .. u .. ' ' .. str(seen) .. ' ' .. name)
  return 1
end

-- One node fewer has the user up. At none, the grace starts (returns its deadline), or with
-- `immediate` (a log out, no grace) the user goes offline at once. Returns -1 without a grace.
local function down(u, at, now, grace, immediate)
  if redis.call('HINCRBY', K_COUNT, u, -1) > 0 then return -1 end
  redis.call('HDEL', K_COUNT, u)
  if immediate or grace <= 0 then
    offline(u, at)
    return -1
  end
  local d = now + grace
  redis.call('ZADD', K_GRACE, d, u)
  redis.call('HSET', K_LAST, u, str(at))
  return d
end
