-- Cluster: the index half of put_token (the token key lives in another
-- slot and is written next). KEYS and ARGV as lib/index_token.lua.
-- Needs now_ms.lua, lib/index_token.lua.
return 1
