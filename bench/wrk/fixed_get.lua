-- GET of the URL's own path; headers (a bearer token) come from wrk's -H.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
