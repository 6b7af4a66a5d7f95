-- KEYS: toksa set, tokorg set. ARGV: token key prefix, satok prefix, org.
local n = 0
for _, sa in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local z = ARGV[2] .. sa
  for _, h in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    n = n + redis.call('DEL', ARGV[1] .. h)
  end
  redis.call('DEL', z)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[3])
return n
