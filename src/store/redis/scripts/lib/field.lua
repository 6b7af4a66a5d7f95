-- `field(json, needle)`: a top-level string field of a record as
-- serde_json writes it, found by its `"name":"` needle. It replaces
-- `cjson.decode`, which builds a table of every field, on the hot look-up,
-- and searches with plain `string.find` rather than a Lua pattern, which is
-- tried at every position of the record (measured in docs/performance.md,
-- "Store"). The fields read are ids, which never contain `"` or `\`; a `"`
-- inside any other value is written `\"`, so the needle cannot match inside
-- one, and the first match is the field itself. No match, or a value with
-- an escape, reads as no field, which `env_role` reports as an unreadable
-- record.
local function field(json, needle)
  local _, e = string.find(json, needle, 1, true)
  if not e then return nil end
  local close = string.find(json, '"', e + 1, true)
  if not close then return nil end
  local v = string.sub(json, e + 1, close - 1)
  if string.find(v, '\\', 1, true) then return nil end
  return v
end
