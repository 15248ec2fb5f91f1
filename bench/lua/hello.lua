-- GET / of the hello-world app (bench/hello.py): the server and framework ceiling for reads.
local req

function init(args)
  seed()
  req = wrk.format("GET", "/")
end

function request()
  return req
end
