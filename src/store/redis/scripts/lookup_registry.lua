-- Cluster: the registry half of lookup, once the token is known.
-- KEYS: env hash. ARGV: env id, membership prefix, sa id.
-- Answers what env_role answers, as a list: {}, {org, ws}, {org, ws, role}
-- or {''}. Needs field.lua, env_role.lua.
return {env_role(KEYS[1], ARGV[1], ARGV[2], ARGV[3])}
