-- The data plane half of the router. The route table lives in the shared dict "paas_routes"
-- as host -> "app mode ip:port/dyno ip:port/dyno ..." (a plain string: this build has no
-- cjson); mode is up | idle (H14) | crashed (H10) | maintenance (H80). Wildcard hosts are
-- stored as "*.example.com".
local balancer = require "ngx.balancer"

local _M = {}

local routes = ngx.shared.paas_routes
local rr = ngx.shared.paas_rr
-- ACME http-01 challenges: token -> "hostname key_authorization" (set on PUT /challenges).
local challenges = ngx.shared.paas_acme
local CHALLENGE_PREFIX = "/.well-known/acme-challenge/"

local function page(title, text)
    return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" .. title
        .. "</title>\n<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;"
        .. "color:#333}</style></head>\n<body><h1>" .. title .. "</h1>\n<p>" .. text
        .. "</p></body></html>\n"
end

local PAGES = {
    NOAPP = page("No such app", "There is no app configured at that hostname."),
    H10 = page("Application error", "An error occurred in the application and your page "
        .. "could not be served: the app's web dynos have crashed. If you are the app's "
        .. "owner, check <code>paas logs</code> for details."),
    H12 = page("Application error", "The app did not respond in time and your request "
        .. "timed out. If you are the app's owner, check <code>paas logs</code> for details."),
    H13 = page("Application error", "The app closed the connection without sending a "
        .. "response. If you are the app's owner, check <code>paas logs</code> for details."),
    H14 = page("No web processes running", "This app has no web dynos running. If you are "
        .. "the app's owner, scale up its web process type: <code>paas ps:scale web=1</code>."),
    H80 = page("Offline for maintenance", "This app is undergoing maintenance right now. "
        .. "Please check back later."),
    TOOBIG = page("Request too large", "The request body is larger than this platform "
        .. "accepts."),
}

local DESC = {
    H10 = "App crashed",
    H12 = "Request timeout",
    H13 = "Connection closed without response",
    H14 = "No web processes running",
    H80 = "Maintenance mode",
}

local function split(s)
    local out = {}
    for word in s:gmatch("%S+") do
        out[#out + 1] = word
    end
    return out
end

-- "ip:port/dyno" -> {ip, port, dyno}
local function parse_peer(word)
    local host, port, dyno = word:match("^(%d+%.%d+%.%d+%.%d+):(%d+)/([%w_.%-]+)$")
    if not host then
        return nil
    end
    port = tonumber(port)
    if port < 1 or port > 65535 then
        return nil
    end
    return {host, port, dyno}
end

-- The route of a host: exact first, then the most specific wildcard.
local function lookup(host)
    host = (host or ""):lower():gsub("%.$", "")
    local value = routes:get(host)
    if value then
        return value
    end
    local rest = host
    while true do
        rest = rest:match("^[^.]+%.(.+)$")
        if not rest then
            return nil
        end
        value = routes:get("*." .. rest)
        if value then
            return value
        end
    end
end

local function peers_of(words)
    local peers = {}
    for i = 3, #words do
        local peer = parse_peer(words[i])
        if peer then
            peers[#peers + 1] = peer
        end
    end
    return peers
end

local function send_page(status, code)
    local var = ngx.var
    if DESC[code] then
        var.paas_at = (code == "H80" and "info" or "error") .. " code=" .. code
            .. ' desc="' .. DESC[code] .. '"'
    end
    ngx.status = status
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache, no-store"
    ngx.print(PAGES[code])
    return ngx.exit(ngx.HTTP_OK)
end

local MODE_CODES = {idle = "H14", crashed = "H10", maintenance = "H80"}

local function normal_host(host)
    return ((host or ""):lower():gsub("%.$", ""))
end

-- The router's own answer to an ACME http-01 challenge for this host, whatever the app's
-- state (maintenance, no dynos, crashed) and never redirected. False: not one of ours.
local function answer_challenge(var, route)
    local token = var.uri:sub(#CHALLENGE_PREFIX + 1)
    local value = challenges:get(token)
    if value == nil then
        return false
    end
    local host, key_authorization = value:match("^(%S+) (%S+)$")
    if host ~= normal_host(var.host) then
        return false
    end
    var.paas_app = route and route:match("^%S+") or "-"
    var.paas_at = 'info desc="ACME challenge"'
    ngx.status = ngx.HTTP_OK
    ngx.header["Content-Type"] = "text/plain"
    ngx.header["Cache-Control"] = "no-cache, no-store"
    ngx.print(key_authorization)
    return true
end

local function redirect_to_https(var)
    var.paas_at = 'info desc="Redirected to HTTPS"'
    local port = _M.tls_port == 443 and "" or ":" .. _M.tls_port
    return ngx.redirect("https://" .. normal_host(var.host) .. port .. var.request_uri, 308)
end

function _M.access()
    local var = ngx.var
    local value = lookup(var.host)
    if var.uri:sub(1, #CHALLENGE_PREFIX) == CHALLENGE_PREFIX and answer_challenge(var, value) then
        return ngx.exit(ngx.HTTP_OK)
    end
    if value == nil then
        var.paas_at = 'error desc="No such app"'
        return send_page(ngx.HTTP_NOT_FOUND, "NOAPP")
    end
    local words = split(value)
    var.paas_app = words[1]
    var.paas_route = value
    local https = words[3] and words[3]:match("^https:(%d+)$")
    if https then
        if var.scheme == "http" then
            return redirect_to_https(var)
        elseif https ~= "0" then
            var.paas_hsts = "max-age=" .. https
        end
    end
    local code = MODE_CODES[words[2]]
    local peers = peers_of(words)
    if code == nil and #peers == 0 then
        code = "H14"
    end
    if code then
        return send_page(503, code)
    end
    ngx.ctx.peers = peers
    ngx.ctx.start = rr:incr(words[1], 1, 0) or 0
    var.paas_request_start = string.format("%d", ngx.req.start_time() * 1000)
end

-- A retry re-reads the route: the table may have changed since the access phase (a deploy
-- switched dynos), and the new peers are the ones to try.
local function refresh_peers(ctx)
    local var = ngx.var
    local value = lookup(var.host)
    if value == nil or value == var.paas_route then
        return
    end
    local peers = peers_of(split(value))
    if #peers > 0 then
        var.paas_route = value
        ctx.peers = peers
    end
end

function _M.balance()
    local ctx = ngx.ctx
    if ctx.tries == nil then
        ctx.tries = 0
        -- Every peer once, plus one more try on a re-read table.
        balancer.set_more_tries(#ctx.peers)
    else
        ctx.tries = ctx.tries + 1
        refresh_peers(ctx)
    end
    local peers = ctx.peers
    local n = #peers
    local peer = peers[(ctx.start + ctx.tries) % n + 1]
    local ok, err = balancer.set_current_peer(peer[1], peer[2])
    if not ok then
        ngx.log(ngx.ERR, "paas: set_current_peer ", peer[1], ":", peer[2], ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

local function last_item(value)
    if value == nil or value == "" then
        return nil
    end
    return value:match("([^%s,]+)%s*$")
end

local function ms(value)
    local n = tonumber(value or "")
    if n == nil then
        return 0
    end
    return math.floor(n * 1000 + 0.5)
end

local function total_ms(value)
    if value == nil or value == "" then
        return 0
    end
    local sum = 0
    for t in value:gmatch("[%d%.]+") do
        sum = sum + (tonumber(t) or 0)
    end
    return math.floor(sum * 1000 + 0.5)
end

-- The access log is written with escape=none: every client-controlled field is escaped here.
local function escape(value)
    if value == nil then
        return ""
    end
    return (value:gsub('[%c"\\\128-\255]', function(c)
        return string.format("\\x%02X", c:byte())
    end))
end

local function dyno_of(route, addr)
    if route == nil or addr == nil then
        return "-"
    end
    for word in route:gmatch("%S+") do
        local a, dyno = word:match("^(.-)/(.+)$")
        if a == addr then
            return dyno
        end
    end
    return addr
end

-- Router lines leave a worker in batches: one datagram per LOG_DATAGRAM bytes, at most
-- LOG_DELAY seconds after the first line, instead of a syslog datagram per request (the
-- router process paid a read for each, and its socket queue of 10 datagrams overflowed
-- under load, losing lines). A datagram is lines "<app> <line>" joined by "\n".
local LOG_DELAY = 0.1
local LOG_DATAGRAM = 32768
local LOG_MAX_LINES = 20000  -- held while the router process does not read: then dropped
local log_lines, log_flush_pending = {}, false

local function send_datagrams(lines)
    local sock = ngx.socket.udp()
    local ok, err = sock:setpeername("unix:" .. _M.log_socket)
    if not ok then
        ngx.log(ngx.WARN, "paas: log socket: ", err)
        return
    end
    local chunk, size = {}, 0
    for i = 1, #lines do
        local line = lines[i]
        if size + #line + 1 > LOG_DATAGRAM and #chunk > 0 then
            sock:send(table.concat(chunk, "\n"))
            chunk, size = {}, 0
        end
        chunk[#chunk + 1] = line
        size = size + #line + 1
    end
    if #chunk > 0 then
        ok, err = sock:send(table.concat(chunk, "\n"))
        if not ok then
            ngx.log(ngx.WARN, "paas: log socket: ", err)
        end
    end
    sock:close()
end

local function flush_log(premature)
    local lines = log_lines
    log_lines, log_flush_pending = {}, false
    if #lines > 0 and _M.log_socket then
        send_datagrams(lines)
    end
end

local function queue_line(line)
    if #log_lines >= LOG_MAX_LINES then
        return
    end
    log_lines[#log_lines + 1] = line
    if not log_flush_pending then
        local ok, err = ngx.timer.at(LOG_DELAY, flush_log)
        if ok then
            log_flush_pending = true
        else
            ngx.log(ngx.WARN, "paas: log timer: ", err)
        end
    end
end

-- Heroku's router log line, after the app's name. Client-controlled fields are escaped.
function _M.log()
    local var = ngx.var
    local app = var.paas_app
    if app == "" then
        local value = lookup(var.host)
        app = value and value:match("^%S+") or "-"
    end
    local xff = var.http_x_forwarded_for
    local addr = last_item(var.upstream_addr)
    local connect = ms(last_item(var.upstream_connect_time))
    local service = math.max(total_ms(var.upstream_response_time) - connect, 0)
    queue_line(table.concat({
        app, " at=", var.paas_at, " method=", var.request_method,
        ' path="', escape(var.request_uri), '" host=', escape(var.host),
        " request_id=", var.paas_request_id,
        ' fwd="', escape(xff and xff .. ", " .. var.remote_addr or var.remote_addr),
        '" dyno=', addr and dyno_of(var.paas_route, addr) or "-",
        " connect=", connect, "ms service=", service, "ms status=", var.status,
        " bytes=", var.bytes_sent, " protocol=", var.scheme,
    }))
end

-- error_page target for 502/504 from the upstream: which Heroku error was it?
function _M.app_error()
    local var = ngx.var
    local status = last_item(var.upstream_status)
    local connected = last_item(var.upstream_connect_time)
    local code
    if connected == nil or connected == "-" then
        code = "H10"
    elseif status == "504" then
        code = "H12"
    else
        code = "H13"
    end
    return send_page(503, code)
end

function _M.too_large()
    ngx.var.paas_at = 'error desc="Request body too large"'
    ngx.status = 413
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    ngx.print(PAGES.TOOBIG)
    return ngx.exit(ngx.HTTP_OK)
end

-- Control endpoint: "host app mode ip:port/dyno ...\n" lines replace the whole table.

local MODES = {up = true, idle = true, crashed = true, maintenance = true}

local function parse_table(body)
    local table_ = {}
    for line in body:gmatch("[^\n]+") do
        local words = split(line)
        if #words > 0 then
            local host = words[1]:lower()
            if not host:match("^[%w%.%-_%*]+$") then
                return nil, "bad host: " .. words[1]
            end
            if #words < 3 or not words[2]:match("^[%w%-]+$") or not MODES[words[3]] then
                return nil, "bad route for " .. host .. ": want host app mode peers..."
            end
            for i = 4, #words do
                if not parse_peer(words[i]) and not (i == 4 and words[i]:match("^https:%d+$")) then
                    return nil, "bad peer for " .. host .. ": " .. words[i]
                end
            end
            table_[host] = table.concat(words, " ", 2)
        end
    end
    return table_
end

local function put_routes()
    ngx.req.read_body()
    local body = ngx.req.get_body_data() or ""
    if body == "" and ngx.req.get_body_file() then
        ngx.status = 413
        ngx.say("route table too large")
        return
    end
    local new, err = parse_table(body)
    if not new then
        ngx.status = 400
        ngx.say(err)
        return
    end
    for host, value in pairs(new) do
        local ok, set_err = routes:safe_set(host, value)
        if not ok then
            ngx.status = 507
            ngx.say("cannot store route for ", host, ": ", set_err)
            return
        end
    end
    for _, host in ipairs(routes:get_keys(0)) do
        if new[host] == nil then
            routes:delete(host)
        end
    end
    ngx.status = 204
end

local function get_routes()
    local keys = routes:get_keys(0)
    table.sort(keys)
    local lines = {}
    for _, host in ipairs(keys) do
        local value = routes:get(host)
        if value ~= nil then
            lines[#lines + 1] = host .. " " .. value .. "\n"
        end
    end
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.print(table.concat(lines))
end

-- Challenges: "token hostname key_authorization\n" lines replace the whole set.

local function parse_challenges(body)
    local new = {}
    for line in body:gmatch("[^\n]+") do
        local token, host, key_authorization = line:match("^(%S+) (%S+) (%S+)$")
        if not token or not token:match("^[%w_%-]+$") or not host:match("^[%w%.%-]+$")
                or not key_authorization:match("^[%w_%-%.]+$") then
            return nil, "bad challenge line: want token hostname key_authorization"
        end
        new[token] = host:lower() .. " " .. key_authorization
    end
    return new
end

local function put_challenges()
    ngx.req.read_body()
    local new, err = parse_challenges(ngx.req.get_body_data() or "")
    if not new then
        ngx.status = 400
        ngx.say(err)
        return
    end
    for token, value in pairs(new) do
        local ok, set_err = challenges:safe_set(token, value)
        if not ok then
            ngx.status = 507
            ngx.say("cannot store challenge: ", set_err)
            return
        end
    end
    for _, token in ipairs(challenges:get_keys(0)) do
        if new[token] == nil then
            challenges:delete(token)
        end
    end
    ngx.status = 204
end

local function get_challenges()
    local keys = challenges:get_keys(0)
    table.sort(keys)
    local lines = {}
    for _, token in ipairs(keys) do
        local value = challenges:get(token)
        if value ~= nil then
            lines[#lines + 1] = token .. " " .. value .. "\n"
        end
    end
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.print(table.concat(lines))
end

local function serve(put, get)
    local method = ngx.req.get_method()
    if method == "PUT" then
        return put()
    elseif method == "GET" then
        return get()
    end
    ngx.header["Allow"] = "GET, PUT"
    return ngx.exit(ngx.HTTP_NOT_ALLOWED)
end

function _M.control()
    return serve(put_routes, get_routes)
end

function _M.control_challenges()
    return serve(put_challenges, get_challenges)
end

return _M
