-- GET /_ah/stop (sent by the host to a backend when it shuts down).
return function(req)
  require("runtime").log("info", "/_ah/stop: the instance is shutting down")
  return "bye\n"
end
