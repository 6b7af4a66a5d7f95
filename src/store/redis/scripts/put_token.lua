-- KEYS: satok zset, toksa set, tokorg set, token key.
-- ARGV: ttl seconds, hash, sa id, org id, json.
-- Needs now_ms.lua, index_token.lua.
redis.call('SET', KEYS[4], ARGV[5], 'EX', ttl)
return 1
