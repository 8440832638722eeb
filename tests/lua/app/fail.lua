return function(req) error({ code = 7 }) end
