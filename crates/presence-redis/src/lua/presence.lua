-- A node's presence changes, applied in order: one call per change (or per batch of changes).
-- ARGV[2] the incarnation whose lease fences the call, ARGV[3] grace (ms), then triples from
-- ARGV[4]: 'U' user name (first socket up on the node), 'D' user at (last socket down),
-- 'L' user at (down by a log out: no grace), 'E' user '' (end the user's grace if up nowhere).
-- KEYS[10]: the node's SET of users (the fencing incarnation's own, or an older one of the
-- same node being retired).
-- Returns {0, now, earliest grace deadline started or -1}, or {-1, now, -1}: FENCED, nothing done.
local now = now_ms()
if not live(ARGV[2], now) then return {-1, now, -1} end
local set = KEYS[10]
local grace = tonumber(ARGV[3])
local next_deadline = -1
for i = 4, #ARGV, 3 do
  local kind, u, x = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 'U' then
    if redis.call('SADD', set, u) == 1 and redis.call('HINCRBY', K_COUNT, u, 1) == 1 then
      local d = redis.call('ZSCORE', K_GRACE, u)
      if d and tonumber(d) > now then
        -- Back within the grace (a reload, perhaps on another node): nobody was told.
        redis.call('ZREM', K_GRACE, u)
        redis.call('HDEL', K_LAST, u)
      else
        -- A grace that ran out but was not swept yet ends first.
        if d then offline(u, redis.call('HGET', K_LAST, u) or now) end
        if redis.call('HSETNX', K_NAMES, u, x) == 1 then emit('on ' .. u .. ' ' .. x) end
      end
    end
  elseif kind == 'D' or kind == 'L' then
    if redis.call('SREM', set, u) == 1 then
      next_deadline = earliest(next_deadline, down(u, x, now, grace, kind == 'L'))
    end
  elseif kind == 'E' then
    if redis.call('HEXISTS', K_COUNT, u) == 0 and redis.call('ZSCORE', K_GRACE, u) then
      offline(u, redis.call('HGET', K_LAST, u) or now)
    end
  end
end
return {0, now, next_deadline}
