-- Cluster: the index half of put_token_limited (the token key lives in
-- another slot and is written next, only when this answers `{0, 0}`).
-- KEYS: satok zset, toksa set, tokorg set, issue log zset, sa hash, cred
-- hash. ARGV as put_token_limited without the json. {3, 0} when the
-- issuer check refuses.
-- Needs now_ms.lua, lib/issuer.lua, lib/issuer_or_3.lua,
-- lib/token_limits.lua, lib/index_token.lua.
return {0, 0}
