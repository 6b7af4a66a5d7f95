-- KEYS: ws hash, sa hash, mem hash, samem set. ARGV: ws id, sa id, json.
-- 0 created, 1 updated, 2 no such workspace, 3 no such account.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 2 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 3 end
local added = redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
if added == 1 then return 0 end
return 1
