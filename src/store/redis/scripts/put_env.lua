-- KEYS: env hash, wsenv set, ws hash. ARGV: env id, json, org, ws.
-- 0 created, 1 updated, 2 conflict, 3 no such workspace,
-- -1 the stored record is corrupt.
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 0 then return 3 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local outcome = 0
if cur then
  local ok, e = pcall(cjson.decode, cur)
  if not ok or type(e) ~= 'table' then return -1 end
  if e.organization_id ~= ARGV[3] or e.workspace_id ~= ARGV[4] then return 2 end
  outcome = 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return outcome
