-- The cluster's presence, read atomically: {seq, registered or -1, {user, name, ...}}.
-- O(users online): only on a resync, never per change.
local seq = tonumber(redis.call('GET', K_SEQ) or '0')
local reg = tonumber(redis.call('GET', K_REG) or '-1')
return {seq, reg, redis.call('HGETALL', K_NAMES)}
