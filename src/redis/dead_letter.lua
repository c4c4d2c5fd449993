-- Moves refused entries to the dead-letter stream, then acknowledges them in the group.
-- A failing XADD raises an error that ends the script before the XACK, so an entry is never
-- acknowledged without its dead letter (MULTI/EXEC would still run the XACK after a failed
-- XADD). XADDs done before a failure stay; the caller's retry may add those again.
-- KEYS[1]: dead-letter stream, KEYS[2]: source stream
-- ARGV[1]: group; then per entry: id, n, and n field/value arguments
local group = ARGV[1]
local i = 2
local ids = {}
while i <= #ARGV do
  local id = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local args = {'XADD', KEYS[1], '*'}
  for j = 1, n do
    args[#args + 1] = ARGV[i + 1 + j]
  end
  redis.call(unpack(args))
  ids[#ids + 1] = id
  i = i + 2 + n
end
for first = 1, #ids, 500 do
  redis.call('XACK', KEYS[2], group, unpack(ids, first, math.min(first + 499, #ids)))
end
return #ids
