-- Renews the incarnation's lease, unless it has lapsed (then FENCED: the node re-registers).
-- ARGV[2] incarnation, ARGV[3] lease (ms).
-- Returns {0 or -1 (FENCED), now, seq, the next deadline (a lease or a grace) or -1}.
local now = now_ms()
local seq = tonumber(redis.call('GET', K_SEQ) or '0')
local code = -1
if live(ARGV[2], now) then
  redis.call('ZADD', K_NODES, now + tonumber(ARGV[3]), ARGV[2])
  code = 0
end
return {code, now, seq, earliest(first_score(K_NODES), first_score(K_GRACE))}
