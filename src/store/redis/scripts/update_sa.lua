-- Replaces an existing account, only if its record is still the one read
-- (compare-and-set on the stored JSON).
-- KEYS: sa hash. ARGV: sa id, json, the record read.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
