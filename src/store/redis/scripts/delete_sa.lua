-- Deletes an account, its credentials, their client ids and memberships.
-- KEYS: sa hash, cred hash, client hash, samem set.
-- ARGV: sa id, membership key prefix of the org, client ref prefix.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local creds = redis.call('HGETALL', KEYS[2])
for i = 1, #creds, 2 do
  local ok, c = pcall(cjson.decode, creds[i + 1])
  if ok and type(c) == 'table' and type(c.client_id) == 'string'
     and redis.call('HGET', KEYS[3], c.client_id) == ARGV[3] .. creds[i] then
    redis.call('HDEL', KEYS[3], c.client_id)
  end
end
redis.call('DEL', KEYS[2])
for _, ws in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('HDEL', ARGV[2] .. ws, ARGV[1])
end
redis.call('DEL', KEYS[4])
return 1
