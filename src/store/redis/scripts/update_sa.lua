-- Replaces an existing account.
-- KEYS: sa hash. ARGV: sa id, json.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
