-- Adds a token to its account's index. KEYS: satok zset, toksa set, tokorg
-- set. ARGV: ttl seconds, hash, sa id, org id. Needs `now` (now_ms.lua);
-- defines `ttl`.
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('ZADD', KEYS[1], now + ttl * 1000, ARGV[2])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
