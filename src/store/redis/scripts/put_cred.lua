-- Inserts a credential of an existing account, or replaces it only if it
-- is still the one read (compare-and-set on its generation), so that a
-- write from a stale read neither undoes another change (a rotation) nor
-- brings back a deleted credential.
-- KEYS: sa hash, cred hash, client hash.
-- ARGV: sa id, cred id, json, client id, client ref, the generation the
-- stored credential must have ('' : it must not exist yet).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[2], ARGV[2])
if ARGV[6] == '' then
  if old then return 0 end
else
  if not old then return 0 end
  local ok, c = pcall(cjson.decode, old)
  if not ok or type(c) ~= 'table' then return 0 end
  if string.format('%d', tonumber(c.generation) or 0) ~= ARGV[6] then return 0 end
  if type(c.client_id) == 'string' and c.client_id ~= ARGV[4]
     and redis.call('HGET', KEYS[3], c.client_id) == ARGV[5] then
    redis.call('HDEL', KEYS[3], c.client_id)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
return 1
