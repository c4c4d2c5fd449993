-- Moves dead letters back onto the source stream: for each, if it is still in the dead-letter
-- stream, XADD its fields to the source stream and XDEL it from the dead-letter stream, in one
-- step (a script runs atomically), so an entry is never both moved and left, nor lost. One
-- already gone (moved by a redrive that ran meanwhile, or purged) is skipped.
-- KEYS[1]: dead-letter stream, KEYS[2]: source stream
-- ARGV: per letter: dead-letter id, n, and n field/value arguments
-- Returns, per letter, the new entry's id, or false when it was skipped.
local moved = {}
local i = 1
while i <= #ARGV do
  local id = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local still = redis.call('XRANGE', KEYS[1], id, id)
  if #still == 1 then
    local args = {'XADD', KEYS[2], '*'}
    for j = 1, n do
      args[#args + 1] = ARGV[i + 1 + j]
    end
    moved[#moved + 1] = redis.call(unpack(args))
    redis.call('XDEL', KEYS[1], id)
  else
    moved[#moved + 1] = false
  end
  i = i + 2 + n
end
return moved
