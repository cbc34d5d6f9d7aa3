-- The data plane half of the router: the route table lives in the shared dict "paas_routes"
-- as host -> "ip:port ip:port ..." (a plain string: this build has no cjson).
local balancer = require "ngx.balancer"

local _M = {}

local routes = ngx.shared.paas_routes
local rr = ngx.shared.paas_rr

local NO_APP = [[<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>No such app</title></head>
<body><h1>No such app</h1><p>There is no app configured at that hostname.</p></body></html>
]]

local NO_WEB = [[<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>No web processes running</title></head>
<body><h1>No web processes running</h1>
<p>This app has no web dynos running. Scale up its web process type.</p></body></html>
]]

local function split(s)
    local out = {}
    for word in s:gmatch("%S+") do
        out[#out + 1] = word
    end
    return out
end

local function parse_peer(peer)
    local host, port = peer:match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
    if not host then
        return nil
    end
    port = tonumber(port)
    if port < 1 or port > 65535 then
        return nil
    end
    return {host, port}
end

local function send_page(status, code, desc, page)
    ngx.var.paas_at = "error code=" .. code .. ' desc="' .. desc .. '"'
    ngx.status = status
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache, no-store"
    ngx.print(page)
    return ngx.exit(ngx.HTTP_OK)
end

function _M.access()
    local host = ngx.var.host
    local value = routes:get(host)
    if value == nil then
        ngx.status = ngx.HTTP_NOT_FOUND
        ngx.header["Content-Type"] = "text/html; charset=utf-8"
        ngx.print(NO_APP)
        return ngx.exit(ngx.HTTP_OK)
    end
    local peers = {}
    for _, word in ipairs(split(value)) do
        local peer = parse_peer(word)
        if peer then
            peers[#peers + 1] = peer
        end
    end
    if #peers == 0 then
        return send_page(503, "H14", "No web processes running", NO_WEB)
    end
    local n = rr:incr(host, 1, 0)
    ngx.ctx.peers = peers
    ngx.ctx.start = n or 0
    ngx.var.paas_request_start = string.format("%d", ngx.req.start_time() * 1000)
end

function _M.balance()
    local ctx = ngx.ctx
    local peers = ctx.peers
    local n = #peers
    if ctx.tries == nil then
        ctx.tries = 0
        if n > 1 then
            balancer.set_more_tries(n - 1)
        end
    else
        ctx.tries = ctx.tries + 1
    end
    local peer = peers[(ctx.start + ctx.tries) % n + 1]
    local ok, err = balancer.set_current_peer(peer[1], peer[2])
    if not ok then
        ngx.log(ngx.ERR, "paas: set_current_peer ", peer[1], ":", peer[2], ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

local function last_ms(value)
    if value == nil or value == "" then
        return 0
    end
    local last = value:match("([%d%.]+)%s*$")
    return math.floor((tonumber(last) or 0) * 1000 + 0.5)
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

function _M.log()
    local var = ngx.var
    var.paas_path = escape(var.request_uri)
    local xff = var.http_x_forwarded_for
    var.paas_fwd = escape(xff and xff .. ", " .. var.remote_addr or var.remote_addr)
    var.paas_dyno = (var.upstream_addr or "-"):match("([^%s,]+)%s*$") or "-"
    local connect = last_ms(var.upstream_connect_time)
    var.paas_connect = connect .. "ms"
    var.paas_service = math.max(total_ms(var.upstream_response_time) - connect, 0) .. "ms"
    if var.paas_at == "info" and ngx.ctx.peers and var.upstream_status ~= nil
        and var.upstream_status:match("50[24]$") and tonumber(var.status) == 503 then
        var.paas_at = 'error code=H10 desc="App crashed"'
    end
end

function _M.app_error()
    ngx.status = 503
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache, no-store"
    ngx.print([[<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Application error</title></head>
<body><h1>Application error</h1>
<p>An error occurred in the application and your page could not be served.</p></body></html>
]])
    return ngx.exit(ngx.HTTP_OK)
end

-- Control endpoint: "host peer peer ...\n" lines.

local function parse_table(body)
    local table_ = {}
    for line in body:gmatch("[^\n]+") do
        local words = split(line)
        if #words > 0 then
            local host = words[1]:lower()
            if not host:match("^[%w%.%-_]+$") then
                return nil, "bad host: " .. words[1]
            end
            for i = 2, #words do
                if not parse_peer(words[i]) then
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
    for host, peers in pairs(new) do
        local ok, set_err = routes:safe_set(host, peers)
        if not ok then
            ngx.status = 507
            ngx.say("cannot store route for ", host, ": ", set_err)
            return
        end
    end
    for _, host in ipairs(routes:get_keys(0)) do
        if new[host] == nil then
            routes:delete(host)
            rr:delete(host)
        end
    end
    ngx.status = 204
end

local function get_routes()
    local keys = routes:get_keys(0)
    table.sort(keys)
    local lines = {}
    for _, host in ipairs(keys) do
        local peers = routes:get(host)
        if peers ~= nil then
            lines[#lines + 1] = host .. (peers == "" and "" or " " .. peers) .. "\n"
        end
    end
    ngx.header["Content-Type"] = "text/plain; charset=utf-8"
    ngx.print(table.concat(lines))
end

function _M.control()
    local method = ngx.req.get_method()
    if method == "PUT" then
        return put_routes()
    elseif method == "GET" then
        return get_routes()
    end
    ngx.header["Allow"] = "GET, PUT"
    return ngx.exit(ngx.HTTP_NOT_ALLOWED)
end

return _M
