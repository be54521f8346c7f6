-- POST an order of N distinct random products with a fresh Idempotency-Key per request.
-- args: ids file, path, bearer token, key prefix (unique per run), lines per order.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local path, token, key_prefix, line_count
local counter = 0

function init(args)
   for line in io.lines(args[1]) do
      table.insert(ids, line)
   end
   path, token, key_prefix, line_count = args[2], args[3], args[4], tonumber(args[5])
   math.randomseed(os.time() + thread_number)
end

function request()
   counter = counter + 1
   local chosen, items = {}, {}
   while #items < line_count do
      local index = math.random(#ids)
      if not chosen[index] then
         chosen[index] = true
         table.insert(items, '{"product_id":"' .. ids[index] .. '","quantity":1}')
      end
   end
   local body = '{"items":[' .. table.concat(items, ",") .. '],"payment_method_id":"pm_card_visa"}'
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
      ["Idempotency-Key"] = key_prefix .. "-" .. thread_number .. "-" .. counter,
   }
   return wrk.format("POST", path, headers, body)
end
