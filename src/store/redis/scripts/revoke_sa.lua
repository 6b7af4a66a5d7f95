-- KEYS: satok zset, toksa set. ARGV: token key prefix, sa id.
-- DEL answers 0 for an expired key: only live tokens are counted.
local n = 0
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. h)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return n
