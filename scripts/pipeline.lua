-- wrk script for the scripts here: DEPTH requests per write (HTTP/1.1 pipelining), as
-- ../shared/anchors/pipeline.lua, on the URL's path.
local depth = tonumber(os.getenv("DEPTH") or "16")
init = function(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end
request = function() return req end
