-- KEYS: akey hash, akeyused hash. ARGV: key id, organization id.
-- Deletes the key only when it belongs to the organization.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local ok, k = pcall(cjson.decode, v)
if not ok or type(k) ~= 'table' or k.organization_id ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
