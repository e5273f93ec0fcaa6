-- Any node may run it: takes down a node whose lease lapsed (a batch of its users per call,
-- each Offline at once if up nowhere else: a dead node's pages have reconnected elsewhere by
-- now), and ends the graces that are due. Atomic, so each Offline is published once.
-- ARGV[2] a lapsed incarnation to take down ('' for none; the previous call names the next),
-- ARGV[3] batch size, ARGV[4] '1' to end every grace now provided no node holds a live lease
-- (the last node leaving). KEYS[10] the lapsed incarnation's SET (any key of the tag if none).
-- Returns {code (0, or -2: a node is live, nothing forced), now, the next deadline or -1,
-- nodes removed, users taken offline, more work now (0/1), seq, the next lapsed incarnation
-- or false}.
local now = now_ms()
local batch = tonumber(ARGV[3])
local horizon = now
if ARGV[4] == '1' then
  if redis.call('ZCOUNT', K_NODES, '(' .. str(now), '+inf') > 0 then
    return {-2, now, -1, 0, 0, 0, tonumber(redis.call('GET', K_SEQ) or '0'), false}
  end
  horizon = '+inf'
end
local removed, offlines, budget = 0, 0, batch
local cand = ARGV[2]
if cand ~= '' then
  local e = redis.call('ZSCORE', K_NODES, cand)
  if e and tonumber(e) <= now then
    local users = redis.call('SPOP', KEYS[10], batch)
    budget = budget - #users
    for _, u in ipairs(users) do
      if redis.call('HINCRBY', K_COUNT, u, -1) <= 0 then
        redis.call('HDEL', K_COUNT, u)
        offlines = offlines + offline(u, now)
      end
    end
    if redis.call('SCARD', KEYS[10]) == 0 then
      redis.call('ZREM', K_NODES, cand)
      redis.call('HDEL', K_INFO, cand)
      removed = 1
    end
  end
end
if budget > 0 then
  for _, u in ipairs(redis.call('ZRANGEBYSCORE', K_GRACE, '-inf', horizon, 'LIMIT', 0, budget)) do
    offlines = offlines + offline(u, redis.call('HGET', K_LAST, u) or now)
  end
end
local more = 0
local lapsed = redis.call('ZRANGEBYSCORE', K_NODES, '-inf', now, 'LIMIT', 0, 1)
local next_lapsed = lapsed[1] or false
if next_lapsed or #redis.call('ZRANGEBYSCORE', K_GRACE, '-inf', horizon, 'LIMIT', 0, 1) > 0 then more = 1 end
local seq = tonumber(redis.call('GET', K_SEQ) or '0')
return {0, now, earliest(first_score(K_NODES), first_score(K_GRACE)), removed, offlines, more, seq, next_lapsed}
