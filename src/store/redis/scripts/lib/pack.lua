-- `pack(up to four strings)`: one string, each value as
-- `<byte length>:<bytes>` (`unpack` in codec.rs reads it), made in one
-- concatenation rather than through a table. The redis crate parses a
-- reply value by value through a general parser; one bulk string instead
-- of an array of four is cheaper to read (docs/performance.md, "Store").
local function pack(a, b, c, d)
  if d then return #a .. ':' .. a .. #b .. ':' .. b .. #c .. ':' .. c .. #d .. ':' .. d end
  if c then return #a .. ':' .. a .. #b .. ':' .. b .. #c .. ':' .. c end
  if b then return #a .. ':' .. a .. #b .. ':' .. b end
  if a then return #a .. ':' .. a end
  return ''
end
