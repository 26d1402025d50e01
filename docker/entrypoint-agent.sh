#!/bin/bash
# The agent container's entrypoint. While it still has NET_ADMIN (root), it makes the
# proxy container the agent's only peer; then it drops every capability for good and
# runs the agent (CMD, or Claude Code with $AGENT_PROMPT) as the unprivileged user
# `agent`, with the environment `agentlog run` gives a command.
set -euo pipefail

say() { echo "agent: $*" >&2; }
fail() { say "$*"; exit 125; }

PROXY_IP="${AGENTLOG_PROXY_IP:?the compose file names the proxy container address}"
PROXY_PORT="${AGENTLOG_PROXY_PORT:-8080}"
CA=/ca/ca.crt
BUNDLE=/etc/agentlog/ca-bundle.pem
AGENT_USER=agent

# Routes. On a Docker network the host's bridge address (the gateway) is on the agent's
# own subnet, reachable over the link without passing the proxy. So the proxy is the
# only address on the link and everything else, that subnet included, goes via it;
# the proxy's firewall redirects TCP to agentlog and drops and records the rest.
dev="$(ip -o route get "$PROXY_IP" | sed -n 's/.* dev \([^ ]*\).*/\1/p')"
[ -n "$dev" ] || fail "no route to the proxy at $PROXY_IP"
ip -4 route flush dev "$dev" scope link
ip -4 route flush dev "$dev" scope global
ip route add "$PROXY_IP/32" dev "$dev" scope link
ip route add default via "$PROXY_IP" dev "$dev"
ip -6 route flush dev "$dev" 2>/dev/null || true

# Docker's own resolver (127.0.0.11, served by dockerd) would answer outside the proxy
# and, on Docker before 26, forward names out of an internal network: closed. Names are
# agentlog's DNS listener's (the firewall sends port 53 to it whatever the address).
nft -f - <<'NFT'
table inet agentlog_agent {
	chain output {
		type filter hook output priority filter; policy accept;
		ip daddr 127.0.0.11 drop
	}
}
NFT
echo "nameserver $PROXY_IP" >/etc/resolv.conf

# agentlog's CA (the only file of the proxy's the agent gets), alone and with the system's.
for _ in $(seq 1 100); do [ -s "$CA" ] && break; sleep 0.1; done
[ -s "$CA" ] || fail "no CA at $CA: is the proxy container up?"
mkdir -p "$(dirname "$BUNDLE")"
cat /etc/ssl/certs/ca-certificates.crt "$CA" >"$BUNDLE"
chmod 0644 "$BUNDLE"

# Bind mounts that Docker made (as root) for us: given to the agent's user.
for dir in /workspace "/home/$AGENT_USER/.claude"; do
  if [ -d "$dir" ] && [ "$(stat -c %u "$dir")" = 0 ]; then
    chown "$AGENT_USER:$AGENT_USER" "$dir"
  fi
done

proxy_url="http://$PROXY_IP:$PROXY_PORT"
no_proxy="localhost,127.0.0.1,::1"
# As `agentlog run` (src/agentlog/sandbox/agent.py): proxy, CA and user variables.
env_args=(
  "HTTPS_PROXY=$proxy_url" "HTTP_PROXY=$proxy_url" "https_proxy=$proxy_url" "http_proxy=$proxy_url"
  "NO_PROXY=$no_proxy" "no_proxy=$no_proxy"
  "SSL_CERT_FILE=$BUNDLE" "REQUESTS_CA_BUNDLE=$BUNDLE" "CURL_CA_BUNDLE=$BUNDLE" "GIT_SSL_CAINFO=$BUNDLE"
  "NODE_EXTRA_CA_CERTS=$CA"
  "HOME=/home/$AGENT_USER" "USER=$AGENT_USER" "LOGNAME=$AGENT_USER"
)
unset ALL_PROXY all_proxy AGENTLOG_PROXY_IP AGENTLOG_PROXY_PORT

if [ $# -eq 0 ]; then
  # Claude Code on the prompt; its reply goes to the terminal and to ./output.
  set -- bash -c 'claude -p "$AGENT_PROMPT" --permission-mode acceptEdits | tee /workspace/agent-reply.txt'
fi

# No capabilities (none inherited, none in the bounding or ambient sets), none to gain.
exec setpriv --reuid="$AGENT_USER" --regid="$AGENT_USER" --init-groups \
  --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs \
  -- env "${env_args[@]}" "$@"
