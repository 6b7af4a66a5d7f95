-- KEYS: cred hash, client hash. ARGV: cred id, client ref.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local ok, c = pcall(cjson.decode, old)
if ok and type(c) == 'table' and type(c.client_id) == 'string'
   and redis.call('HGET', KEYS[2], c.client_id) == ARGV[2] then
  redis.call('HDEL', KEYS[2], c.client_id)
end
return 1
