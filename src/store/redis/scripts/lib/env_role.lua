-- `env_role(env hash, env id, membership prefix, sa id or nil)` answers
-- what a decision needs: the environment's organization and workspace
-- ids, then the account's role in that workspace. It answers nothing when
-- the environment is unknown, and no role when the account is unknown or
-- no member. An environment or membership record whose fields cannot be
-- read answers `''` in their place, which reads as a corrupt record. Ids
-- and the role, not whole records, cross the wire, so the proxy decodes no
-- JSON for them (docs/performance.md, "Store"). Needs field.lua.
local function env_role(env_key, env_id, mem_prefix, sa)
  local env = redis.call('HGET', env_key, env_id)
  if not env then return end
  local org, ws = field(env, '"organization_id":"'), field(env, '"workspace_id":"')
  if not (org and ws) then return '' end
  if not sa then return org, ws end
  local m = redis.call('HGET', mem_prefix .. org .. ':' .. ws, sa)
  if not m then return org, ws end
  return org, ws, field(m, '"role":"') or ''
end
