-- Account events, published in order. Quadruples from ARGV[2]: op number, kind, a, b:
-- 'signup' id name, 'del' id '', 'sess' key '', 'user' id ''. KEYS[10] is the writer's op mark
-- (the highest op number applied): a batch retried after a lost reply is not applied twice.
-- Returns the mark.
local last = tonumber(redis.call('GET', KEYS[10]) or '0')
local top = last
for i = 2, #ARGV, 4 do
  local n = tonumber(ARGV[i])
  if n > last then
    local kind, a, b = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if kind == 'signup' then
      if redis.call('EXISTS', K_REG) == 1 then redis.call('INCR', K_REG) end
      emit('signup ' .. a .. ' ' .. b)
    elseif kind == 'del' then
      if tonumber(redis.call('GET', K_REG) or '0') > 0 then redis.call('DECR', K_REG) end
      emit('del ' .. a)
    elseif kind == 'sess' then
      emit('sess ' .. a)
    elseif kind == 'user' then
      emit('user ' .. a)
    end
    if n > top then top = n end
  end
end
redis.call('SET', KEYS[10], str(top), 'PX', 3600000)
return top
