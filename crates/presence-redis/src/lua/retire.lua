-- Withdraws an incarnation, a batch of its users per call: each loses this node's count and,
-- if up nowhere else, enters the grace (last seen now). Used by a leaving node for itself,
-- and by a node that re-registered for its older incarnations (whose users it has re-asserted
-- first, so nobody it still holds goes down).
-- ARGV[2] the incarnation withdrawn, ARGV[3] the incarnation whose lease fences the call
-- ('' for none: a node leaving), ARGV[4] grace (ms), ARGV[5] batch size.
-- KEYS[10] the withdrawn incarnation's SET.
-- Returns {0 or -1 (FENCED), now, users left in the set, earliest grace deadline or -1}.
local now = now_ms()
if ARGV[3] ~= '' and not live(ARGV[3], now) then return {-1, now, -1, -1} end
local grace = tonumber(ARGV[4])
local next_deadline = -1
for _, u in ipairs(redis.call('SPOP', KEYS[10], tonumber(ARGV[5]))) do
  next_deadline = earliest(next_deadline, down(u, now, now, grace, false))
end
local left = redis.call('SCARD', KEYS[10])
if left == 0 then
  redis.call('ZREM', K_NODES, ARGV[2])
  redis.call('HDEL', K_INFO, ARGV[2])
end
return {0, now, left, next_deadline}
