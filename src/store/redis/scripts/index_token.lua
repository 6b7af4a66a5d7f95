-- Cluster: the index half of put_token (the token key lives in another
-- slot and is written next). KEYS and ARGV as lib/index_token.lua, then
-- the sa hash and cred hash keys and the issuer check's sa id, credential
-- id, generation and account record; 0 when the issuer check refuses.
-- Needs now_ms.lua, lib/issuer.lua, lib/issuer_or_0.lua,
-- lib/index_token.lua.
return 1
