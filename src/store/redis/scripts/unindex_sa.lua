-- Cluster: after the tokens themselves were deleted.
-- KEYS: satok zset, toksa set. ARGV: sa id, hash...
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
