-- put_token under the account's limits, in one atomic step.
-- KEYS: satok zset, toksa set, tokorg set, issue log zset, token key.
-- ARGV: ttl seconds, hash, sa id, org id, max live tokens, issuances per
-- window, window ms (0: none), json.
-- Needs now_ms.lua, lib/token_limits.lua, lib/index_token.lua.
redis.call('SET', KEYS[5], ARGV[8], 'EX', ttl)
return {0, 0}
