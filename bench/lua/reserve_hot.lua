-- POST /inventory/reserve straight to inventory, always the same product, each request a new order id:
-- every reserve takes one unit from one row. Only 201 (a new reservation) counts: anything else, a 200
-- (a replay) included, is counted by status.
-- args: product id, service token, order-id prefix (unique to the run)
local product, headers, prefix
local counter = 0

function init(args)
  seed()
  product, prefix = args[1], args[3] .. "-" .. tostring(thread_id or 0) .. "-"
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2] }
end

function request()
  counter = counter + 1
  local body = string.format('{"order_id":"%s%d","product_id":"%s","quantity":1}', prefix, counter, product)
  return wrk.format("POST", "/inventory/reserve", headers, body)
end

function response(status, headers, body)
  if status ~= 201 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end
