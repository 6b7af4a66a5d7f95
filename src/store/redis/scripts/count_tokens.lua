-- KEYS: tokorg set. ARGV: toksa prefix, satok key root (see keys.rs).
-- Sums live index entries; drops index entries with none left. Needs `now`.
local n = 0
for _, org in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = ARGV[1] .. org
  for _, sa in ipairs(redis.call('SMEMBERS', s)) do
    local c = redis.call('ZCOUNT', ARGV[2] .. org .. ':' .. sa, '(' .. now, '+inf')
    if c == 0 then redis.call('SREM', s, sa) end
    n = n + c
  end
  if redis.call('SCARD', s) == 0 then redis.call('SREM', KEYS[1], org) end
end
return n
