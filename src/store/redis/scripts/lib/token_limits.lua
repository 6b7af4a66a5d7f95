-- Refuses a token its account may not be issued now, before it is
-- indexed. KEYS[1]: the account's satok zset (live tokens by expiry, ms);
-- KEYS[4]: its issue log zset (issuances by time, ms). ARGV[5]: the cap on
-- live tokens, ARGV[6]: issuances allowed per window, ARGV[7]: the window
-- in ms (0: no such limit). A refusal returns `{1 | 2, retry after ms}`
-- from the script; otherwise the issuance is logged. Needs `now`
-- (now_ms.lua).
local max_live, per, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if max_live > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
  if redis.call('ZCARD', KEYS[1]) >= max_live then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, math.max(0, tonumber(oldest[2]) - now)}
  end
end
if per > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
  if redis.call('ZCARD', KEYS[4]) >= per then
    local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {2, math.max(1, tonumber(first[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[4], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[4], window)
end
