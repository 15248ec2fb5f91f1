-- The order service's mix: 80 % reads (GET /orders/{id} of an existing order, picked at random),
-- 20 % POST /orders on a product picked at random among many.
-- args: product id prefix, number of products, highest existing order number
local orders = {}

function init(args)
  seed()
  local headers = { ["Content-Type"] = "application/json" }
  for i = 1, tonumber(args[2]) do
    local body = string.format('{"product_id":"%s%03d","quantity":1,"customer_id":"bench"}', args[1], i)
    orders[i] = wrk.format("POST", "/orders", headers, body)
  end
  -- Read requests are built on demand: the order ids span a range too large to pre-format.
  max_order = tonumber(args[3])
end

function request()
  if math.random() < 0.8 then
    return wrk.format("GET", string.format("/orders/ORD%08d", math.random(max_order)))
  end
  return orders[math.random(#orders)]
end
