-- Sets an account's limits if the account exists.
-- KEYS: the organization's sa hash, its limits hash. ARGV: sa id, JSON.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
