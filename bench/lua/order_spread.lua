-- POST /orders on a product picked at random among many.
-- args: product id prefix, number of products (ids are prefix .. %03d, 1-based)
local reqs = {}

function init(args)
  seed()
  local headers = { ["Content-Type"] = "application/json" }
  for i = 1, tonumber(args[2]) do
    local body = string.format('{"product_id":"%s%03d","quantity":1,"customer_id":"bench"}', args[1], i)
    reqs[i] = wrk.format("POST", "/orders", headers, body)
  end
end

function request()
  return reqs[math.random(#reqs)]
end
