-- KEYS: akey hash, akeyused hash. ARGV: key id, unix seconds.
-- A key deleted meanwhile gets no entry.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
