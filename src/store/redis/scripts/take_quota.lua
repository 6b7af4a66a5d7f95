-- Takes up to `want` requests of an account's daily and monthly quotas at
-- once: what fits under both limits is added to both counters.
-- KEYS: the day's counter, the month's counter (one slot: the account's tag).
-- ARGV: want, daily limit, monthly limit (-1: none), seconds to keep the
-- day's counter, seconds to keep the month's.
-- Returns {granted, day count, month count}.
local want = tonumber(ARGV[1])
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local granted = want
local daily = tonumber(ARGV[2])
local monthly = tonumber(ARGV[3])
if daily >= 0 then granted = math.min(granted, math.max(daily - day, 0)) end
if monthly >= 0 then granted = math.min(granted, math.max(monthly - month, 0)) end
if granted > 0 then
  day = redis.call('INCRBY', KEYS[1], granted)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  month = redis.call('INCRBY', KEYS[2], granted)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return {granted, day, month}
