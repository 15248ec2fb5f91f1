-- GET /inventory/{id} on a product picked at random among many.
-- args: product id prefix, number of products
local reqs = {}

function init(args)
  seed()
  for i = 1, tonumber(args[2]) do
    reqs[i] = wrk.format("GET", string.format("/inventory/%s%03d", args[1], i))
  end
end

function request()
  return reqs[math.random(#reqs)]
end
