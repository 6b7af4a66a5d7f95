-- Inserts or replaces a credential of an existing account.
-- KEYS: sa hash, cred hash, client hash.
-- ARGV: sa id, cred id, json, client id, client ref.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then
  local ok, c = pcall(cjson.decode, old)
  if ok and type(c) == 'table' and type(c.client_id) == 'string' and c.client_id ~= ARGV[4]
     and redis.call('HGET', KEYS[3], c.client_id) == ARGV[5] then
    redis.call('HDEL', KEYS[3], c.client_id)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return 1
