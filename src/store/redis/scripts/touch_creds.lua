-- KEYS: one cred hash per credential. ARGV: (id, old json, new json)
-- per credential; a value changed meanwhile is left alone.
local n = 0
for i = 1, #KEYS do
  local b = (i - 1) * 3
  if redis.call('HGET', KEYS[i], ARGV[b + 1]) == ARGV[b + 2] then
    redis.call('HSET', KEYS[i], ARGV[b + 1], ARGV[b + 3])
    n = n + 1
  end
end
return n
