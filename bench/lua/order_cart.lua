-- POST /orders of a cart: three distinct products picked at random among many, one unit each.
-- args: product id prefix, number of products (ids are prefix .. %03d, 1-based)
local reqs = {}

function init(args)
  seed()
  local headers = { ["Content-Type"] = "application/json" }
  local count = tonumber(args[2])
  -- 256 prebuilt carts, so no request is built while measuring.
  for i = 1, 256 do
    -- Three distinct products: a, and two distinct non-zero offsets from it.
    local a = math.random(count)
    local d1 = math.random(1, count - 1)
    local d2 = math.random(1, count - 2)
    if d2 >= d1 then d2 = d2 + 1 end
    local b = (a - 1 + d1) % count + 1
    local c = (a - 1 + d2) % count + 1
    local body = string.format(
      '{"items":[{"product_id":"%s%03d","quantity":1},{"product_id":"%s%03d","quantity":1},' ..
      '{"product_id":"%s%03d","quantity":1}],"customer_id":"bench"}',
      args[1], a, args[1], b, args[1], c)
    reqs[i] = wrk.format("POST", "/orders", headers, body)
  end
end

function request()
  return reqs[math.random(#reqs)]
end
