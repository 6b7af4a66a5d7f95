-- Takes up to `want` units of the current fixed window of a rate-limit
-- counter, never more than `limit` in one window over all callers.
-- KEYS[1]: the counter's root; the window's key is the root, `:`, and the
-- window index on the server's clock (same slot: the tag is in the root).
-- ARGV: want, limit, window length in ms.
-- Returns {granted, count after the grant, ms until the window ends}.
local want = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local index = math.floor(now / window)
local key = KEYS[1] .. ':' .. index
local used = tonumber(redis.call('GET', key) or '0')
local granted = math.min(want, math.max(limit - used, 0))
if granted > 0 then
  used = redis.call('INCRBY', key, granted)
  redis.call('PEXPIRE', key, window * 2)
end
return {granted, used, (index + 1) * window - now}
