-- GET <prefix><random product id>; args: ids file, path prefix.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local prefix = "/api/v1/products/"

function init(args)
   for line in io.lines(args[1]) do
      table.insert(ids, line)
   end
   prefix = args[2] or prefix
   math.randomseed(os.time() + thread_number)
end

function request()
   return wrk.format("GET", prefix .. ids[math.random(#ids)])
end
