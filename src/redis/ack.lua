-- Acknowledges ids in a group, then reads where the group stands, in one atomic step: its last
-- delivered id and its oldest pending id. Everything at or below the last delivered id that is
-- not pending was acknowledged, and an id is acknowledged only after its commit, so the two give
-- a point below which the group's whole history is committed (the resume point).
-- (groups.lua is prepended: stream_groups.)
-- KEYS[1]: stream; ARGV[1]: group; ARGV[2..]: ids
-- Returns {acknowledged, last delivered id or false, oldest pending id or false}.
local group = ARGV[1]
local acked = 0
for first = 2, #ARGV, 500 do
  acked = acked + redis.call('XACK', KEYS[1], group, unpack(ARGV, first, math.min(first + 499, #ARGV)))
end
local last = false
for _, g in ipairs(stream_groups(KEYS[1]) or {}) do
  if g.name == group then
    last = g.delivered
  end
end
if not last then
  return {acked, false, false}
end
local pending = redis.call('XPENDING', KEYS[1], group)
return {acked, last, pending[2] or false}
