-- KEYS: audit zset, auditd hash. ARGV: lex upper bound, limit.
-- Answers {more ('1'/'0'), json...}.
local lim = tonumber(ARGV[2])
local ids = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[1], '-', 'LIMIT', 0, lim + 1)
local out = {}
if #ids > lim then out[1] = '1' else out[1] = '0' end
for i = 1, math.min(#ids, lim) do
  out[#out + 1] = redis.call('HGET', KEYS[2], ids[i]) or ''
end
return out
