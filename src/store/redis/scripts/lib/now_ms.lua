-- `now` in unix milliseconds from the server's clock, the clock that
-- expires the token keys.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
