-- Cluster: deletes one token key of a revocation, never a marker another
-- revocation left there ('-', see cluster.rs).
-- KEYS: the token key. Returns 1 when a token was deleted, 0 when there was
-- none, -1 for a marker (kept).
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v == '-' then return -1 end
redis.call('DEL', KEYS[1])
return 1
