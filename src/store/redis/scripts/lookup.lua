-- KEYS: token key, env hash. ARGV: env id or '', membership prefix.
-- Answers, packed (pack.lua): nothing (no token), tok, or tok and what
-- env_role answers: org, ws or org, ws, role, or '' when unreadable.
-- Needs field.lua, env_role.lua, pack.lua.
local tok = redis.call('GET', KEYS[1])
if not tok then return '' end
if ARGV[1] == '' then return pack(tok) end
return pack(tok, env_role(KEYS[2], ARGV[1], ARGV[2], field(tok, '"s":"')))
