-- KEYS: client hash.
-- ARGV: client id, cred key root, sa key root (see keys.rs).
-- Answers {credential json, account json} or {}.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {} end
local org, sa, cred = string.match(v, '^(%S+) (%S+) (%S+)$')
if not org then return {} end
local c = redis.call('HGET', ARGV[2] .. org .. ':' .. sa, cred)
local s = redis.call('HGET', ARGV[3] .. org, sa)
if not c or not s then return {} end
return {c, s}
