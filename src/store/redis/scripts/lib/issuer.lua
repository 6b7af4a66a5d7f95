-- The issuer check of a token write: the credential the secret was
-- verified against is still stored with the same generation (not rotated
-- or deleted meanwhile) and its account still active (not disabled or
-- deleted), so that a token request that began before a revocation
-- cannot store a token after it. The last two KEYS: the sa hash and the
-- cred hash of the account; the last three ARGV: sa id, credential id,
-- generation ('' : no check). Defines `issuer_ok`.
local function issuer_ok()
  local nk, na = #KEYS, #ARGV
  if ARGV[na] == '' then return true end
  local sa = redis.call('HGET', KEYS[nk - 1], ARGV[na - 2])
  local cred = redis.call('HGET', KEYS[nk], ARGV[na - 1])
  if not sa or not cred then return false end
  local ok_s, s = pcall(cjson.decode, sa)
  local ok_c, c = pcall(cjson.decode, cred)
  if not ok_s or not ok_c or type(s) ~= 'table' or type(c) ~= 'table' then return false end
  return s.status == 'active' and string.format('%d', tonumber(c.generation) or 0) == ARGV[na]
end
