-- KEYS: env hash, wsenv set. ARGV: env id, org, ws.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local ok, e = pcall(cjson.decode, cur)
if not ok or type(e) ~= 'table' or e.organization_id ~= ARGV[2] or e.workspace_id ~= ARGV[3] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
