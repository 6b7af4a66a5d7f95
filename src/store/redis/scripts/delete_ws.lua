-- Deletes a workspace with its environments and memberships.
-- KEYS: ws hash, env hash, wsenv set, mem hash.
-- ARGV: ws id, samem key prefix of the org, org id.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local ok, e = pcall(cjson.decode, raw)
    if ok and type(e) == 'table' and e.organization_id == ARGV[3] and e.workspace_id == ARGV[1] then
      redis.call('HDEL', KEYS[2], id)
    end
  end
end
redis.call('DEL', KEYS[3])
for _, sa in ipairs(redis.call('HKEYS', KEYS[4])) do
  redis.call('SREM', ARGV[2] .. sa, ARGV[1])
end
redis.call('DEL', KEYS[4])
return 1
