#!/bin/bash
# piku (piku/piku, one file piku.py) on a Debian 12 host without systemd or sshd, for measuring.
#   setup-piku.sh install   apt packages, the piku user, piku.py, `piku.py setup`
#   setup-piku.sh start     uWSGI emperor (as piku), nginx (own prefix, port $PIKU_NGINX_PORT),
#                           and a watcher that stands in for piku-nginx.path/.service
#   setup-piku.sh stop      stops those three by their pid files, then any process left of user piku
#   setup-piku.sh status
# What differs from piku's own install (docs/INSTALL.md + the systemd units in the repo):
#  - no systemd: the emperor runs as `uwsgi-piku --ini ~/.piku/uwsgi/uwsgi.ini` (the unit's
#    ExecStart), in the background; the nginx reload on a change of ~/.piku/nginx (the unit
#    piku-nginx.path) is an inotifywait loop.
#  - piku's nginx template listens on :80 and :443 (hard-coded); this host's 80/443 are not ours,
#    so the watcher copies each ~/.piku/nginx/APP.conf to $RUN/sites/ with 80 -> $PIKU_NGINX_PORT
#    and 443 -> $PIKU_NGINX_TLS_PORT (nothing else changes), and nginx includes that folder.
#  - no sshd: git and the piku commands go through piku's forced command (`piku.py
#    $SSH_ORIGINAL_COMMAND` as user piku) via $RUN/fake-ssh (GIT_SSH_COMMAND) and $RUN/piku.
set -euo pipefail
PIKU_MIRROR=${PIKU_MIRROR:-}   # a git dir of piku/piku (a bare snapshot, a clone or its .git)
PIKU_COMMIT=${PIKU_COMMIT:-ca90545}
PIKU_NGINX_PORT=${PIKU_NGINX_PORT:-49080}
PIKU_NGINX_TLS_PORT=${PIKU_NGINX_TLS_PORT:-49443}
RUN=${PIKU_RUN:-/tmp/piku-run}
# PIKU_USER: a second piku (another session's run beside this one) needs a user of its own, as
# piku keeps everything under its user's home (~/.piku) and `stop` ends that user's processes.
U=${PIKU_USER:-piku}; H=/home/$U
mkdir -p "$RUN"

as_piku() { setpriv --reuid=$U --regid=www-data --init-groups env -i HOME=$H USER=$U LOGNAME=$U \
  PATH=/usr/local/bin:/usr/bin:/bin SHELL=/bin/bash "$@"; }

install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    uwsgi-core uwsgi-plugin-python3 python3-click python3-virtualenv virtualenv nginx-light \
    inotify-tools git openssl bc >/dev/null
  id $U >/dev/null 2>&1 || adduser --disabled-password --gecos 'PaaS access' --ingroup www-data $U >/dev/null
  local gitdir=$PIKU_MIRROR commit=$PIKU_COMMIT
  [ -d "$gitdir/.git" ] && gitdir=$gitdir/.git
  [ -d "$gitdir" ] || { echo "PIKU_MIRROR=$PIKU_MIRROR: not a git dir of piku/piku (see README.md)" >&2; exit 2; }
  if ! git --git-dir="$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "piku commit $commit is not in $gitdir: using its HEAD" >&2; commit=HEAD
  fi
  git --git-dir="$gitdir" archive "$commit" piku.py | tar -x -C $H
  git --git-dir="$gitdir" rev-parse "$commit" > $RUN/piku-commit
  chown $U:www-data $H/piku.py; chmod 755 $H/piku.py
  # paas hands the host's pip configuration to its builds (paas/runtime/hostconfig.py: /etc/pip.conf,
  # /etc/xdg/pip/pip.conf, /root/.pip/pip.conf, /root/.config/pip/pip.conf); give piku's pip the same
  # so both install from the same indexes (PIKU_SAME_PIP_CONF=0 to skip)
  if [ "${PIKU_SAME_PIP_CONF:-1}" = 1 ]; then
    mkdir -p $H/.config/pip; : > $H/.config/pip/pip.conf
    # /etc/xdg/pip/pip.conf and /etc/pip.conf apply to every user already; copy root's user file
    for c in /root/.config/pip/pip.conf /root/.pip/pip.conf; do
      [ -r $c ] && { cp $c $H/.config/pip/pip.conf; break; }
    done
    chown -R $U:www-data $H/.config
  fi
  ln -sf /usr/bin/uwsgi /usr/local/bin/uwsgi-piku           # as piku-bootstrap does
  (cd $H && as_piku python3 $H/piku.py setup)
  # forced command stand-ins: git's ssh, and `piku CMD ARGS` as `ssh piku@host CMD ARGS` would
  cat > $RUN/fake-ssh <<EOF
#!/bin/bash
# git calls: fake-ssh [options] piku@host "git-receive-pack 'app'"; run what authorized_keys' command= runs
cmd="\${@: -1}"
cd $H && exec setpriv --reuid=$U --regid=www-data --init-groups env -i HOME=$H USER=$U LOGNAME=$U \\
  PATH=/usr/local/bin:/usr/bin:/bin SHELL=/bin/bash SSH_ORIGINAL_COMMAND="\$cmd" FINGERPRINT=measure NAME=default \\
  /bin/bash -c '$H/piku.py \$SSH_ORIGINAL_COMMAND'
EOF
  cat > $RUN/piku <<EOF
#!/bin/bash
exec $RUN/fake-ssh piku@localhost "\$*"
EOF
  chmod 755 $RUN/fake-ssh $RUN/piku
  mkdir -p $RUN/sites $RUN/nginx-tmp
  cat > $RUN/nginx.conf <<EOF
# /etc/nginx/nginx.conf of Debian 12 (minus modules-enabled), paths moved to $RUN
user www-data;
worker_processes auto;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log;
events { worker_connections 768; }
http {
  sendfile on; tcp_nopush on; types_hash_max_size 2048;
  include /etc/nginx/mime.types; default_type application/octet-stream;
  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; ssl_prefer_server_ciphers on;
  access_log $RUN/nginx-access.log;
  gzip on;
  client_body_temp_path $RUN/nginx-tmp/body; proxy_temp_path $RUN/nginx-tmp/proxy;
  fastcgi_temp_path $RUN/nginx-tmp/fcgi; uwsgi_temp_path $RUN/nginx-tmp/uwsgi; scgi_temp_path $RUN/nginx-tmp/scgi;
  # piku's nginx.default.dist: a default server, then piku's apps
  server { listen 127.0.0.1:$PIKU_NGINX_PORT default_server; server_name _; return 404; }
  include $RUN/sites/*.conf;
}
EOF
  echo "piku installed: $(cat $RUN/piku-commit)"
}

sync_sites() {  # one pass of the watcher: ~/.piku/nginx/*.conf -> $RUN/sites with our ports
  local f b
  for f in $H/.piku/nginx/*.conf; do
    [ -e "$f" ] || continue
    b=$(basename "$f")
    sed -E "s/^( *listen +[^;]*):80;/\1:$PIKU_NGINX_PORT;/; s/^( *listen +[^;]*):443 ssl/\1:$PIKU_NGINX_TLS_PORT ssl/" "$f" > "$RUN/sites/.$b"
    mv "$RUN/sites/.$b" "$RUN/sites/$b"
  done
  for f in $RUN/sites/*.conf; do
    [ -e "$f" ] || continue
    [ -e "$H/.piku/nginx/$(basename "$f")" ] || rm -f "$f"
  done
}

start() {
  [ -f $RUN/emperor.pid ] && kill -0 "$(cat $RUN/emperor.pid)" 2>/dev/null && { echo "already started"; return; }
  cd $H
  setsid setpriv --reuid=$U --regid=www-data --init-groups env -i HOME=$H USER=$U LOGNAME=$U \
    PATH=/usr/local/bin:/usr/bin:/bin /usr/local/bin/uwsgi-piku --ini $H/.piku/uwsgi/uwsgi.ini \
    </dev/null >>$RUN/emperor.out 2>&1 & echo $! > $RUN/emperor.pid
  sync_sites
  nginx -p $RUN -c $RUN/nginx.conf -e $RUN/nginx-error.log
  # piku-nginx.path + piku-nginx.service: reload nginx whenever ~/.piku/nginx changes
  export -f sync_sites; export H RUN PIKU_NGINX_PORT PIKU_NGINX_TLS_PORT
  setsid bash -c 'inotifywait -m -q -e close_write,moved_to,delete --format %f "$H/.piku/nginx" |
    while read -r f; do sync_sites; nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log" -s reload; \
      echo "$(date +%T.%N) reload after $f"; done' </dev/null >>$RUN/watcher.log 2>&1 & echo $! > $RUN/watcher.pid
  sleep 1; status
}

stop() {
  local p
  if [ -f $RUN/watcher.pid ]; then   # the watcher's session: bash, inotifywait, the loop's subshell
    p=$(cat $RUN/watcher.pid); kill -- -"$p" 2>/dev/null || true; rm -f $RUN/watcher.pid
  fi
  if [ -f $RUN/emperor.pid ]; then   # SIGINT: the emperor stops its vassals and exits
    p=$(cat $RUN/emperor.pid); kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true; rm -f $RUN/emperor.pid
  fi
  if [ -f $RUN/nginx.pid ]; then nginx -p $RUN -c $RUN/nginx.conf -e $RUN/nginx-error.log -s quit || true; sleep 1; fi
  for p in $(pgrep -u $U || true); do echo "left over: $(ps -o pid=,args= -p "$p")"; kill "$p" 2>/dev/null || true; done
  status
}

status() {
  echo "emperor: $(cat $RUN/emperor.pid 2>/dev/null || echo -) nginx: $(cat $RUN/nginx.pid 2>/dev/null || echo -) watcher: $(cat $RUN/watcher.pid 2>/dev/null || echo -)"
  ps -o pid=,user=,rss=,args= -u $U 2>/dev/null || true
}

case "${1:-}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
