-- Prepended to the scripts that need it (ack.lua, trim.lua): the consumer groups of a stream as
-- {name = ..., delivered = <last delivered id>}, or nil when the stream does not exist.
local function stream_groups(stream)
  local reply = redis.pcall('XINFO', 'GROUPS', stream)
  if type(reply) ~= 'table' or reply.err then
    return nil
  end
  local groups = {}
  for _, fields in ipairs(reply) do
    local group = {}
    for i = 1, #fields, 2 do
      if fields[i] == 'name' then
        group.name = fields[i + 1]
      elseif fields[i] == 'last-delivered-id' then
        group.delivered = fields[i + 1]
      end
    end
    groups[#groups + 1] = group
  end
  return groups
end
