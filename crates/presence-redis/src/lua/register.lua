-- A node (re-)registers: a new incarnation "<counter>.<nonce>" with a lease. The registered
-- count is set only if the cluster has none (a fresh or emptied Redis).
-- ARGV[2] nonce, ARGV[3] lease (ms), ARGV[4] node name, ARGV[5] the node's registered count.
-- Returns {counter, now, seq}.
local now = now_ms()
local n = redis.call('INCR', K_INCR)
local inc = str(n) .. '.' .. ARGV[2]
redis.call('ZADD', K_NODES, now + tonumber(ARGV[3]), inc)
redis.call('HSET', K_INFO, inc, ARGV[4])
redis.call('SET', K_REG, ARGV[5], 'NX')
return {n, now, tonumber(redis.call('GET', K_SEQ) or '0')}
