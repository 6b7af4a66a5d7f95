-- The issuer check of a token write: the credential the secret was
-- verified against is still stored with the same generation (not rotated
-- or deleted meanwhile) and its account's record is still the one read
-- (not disabled, deleted or otherwise changed: scopes, allowlist) and
-- active, so that a token request that began before such a change cannot
-- store a token after it and after the revocation that came with it. The
-- last two KEYS: the sa hash and the cred hash of the account; the last
-- four ARGV: sa id, credential id, generation ('' : no check), the account
-- record read. Defines `issuer_ok`.
local function issuer_ok()
  local nk, na = #KEYS, #ARGV
  if ARGV[na - 1] == '' then return true end
  local sa = redis.call('HGET', KEYS[nk - 1], ARGV[na - 3])
  local cred = redis.call('HGET', KEYS[nk], ARGV[na - 2])
  if not sa or not cred or sa ~= ARGV[na] then return false end
  local ok_s, s = pcall(cjson.decode, sa)
  local ok_c, c = pcall(cjson.decode, cred)
  if not ok_s or not ok_c or type(s) ~= 'table' or type(c) ~= 'table' then return false end
  return s.status == 'active' and string.format('%d', tonumber(c.generation) or 0) == ARGV[na - 1]
end
