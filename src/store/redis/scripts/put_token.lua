-- KEYS: satok zset, toksa set, tokorg set, token key, sa hash, cred hash.
-- ARGV: ttl seconds, hash, sa id, org id, json, then the issuer check's
-- sa id, credential id, generation, account record. 0 when the issuer
-- check refuses.
-- Needs now_ms.lua, lib/issuer.lua, lib/issuer_or_0.lua, index_token.lua.
redis.call('SET', KEYS[4], ARGV[5], 'EX', ttl)
return 1
