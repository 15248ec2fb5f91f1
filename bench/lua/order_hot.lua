-- POST /orders, always the same product: every order takes stock from one row.
-- args: product id
local req

function init(args)
  seed()
  local body = string.format('{"product_id":"%s","quantity":1,"customer_id":"bench"}', args[1])
  req = wrk.format("POST", "/orders", { ["Content-Type"] = "application/json" }, body)
end

function request()
  return req
end
