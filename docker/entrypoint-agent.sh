#!/bin/bash
# The agent container's entrypoint. While it still has NET_ADMIN (root), it makes the
# proxy container the agent's only peer; then it drops every capability for good and
# runs the agent (CMD, or Claude Code with $AGENT_PROMPT) as the unprivileged user
# `agent`, with the environment `agentlog run` gives a command.
set -euo pipefail

say() { echo "agent: $*" >&2; }
fail() { say "$*"; exit 125; }

PROXY_LINK_IP="${AGENTLOG_PROXY_IP:?set by the compose file: the proxy container address}"
PROXY_PORT=8080
# The tunnel to the proxy (src/agentlog/sandbox/container.py makes its end with these).
TUNNEL_IF=agentlog0 TUNNEL_VNI=4231 TUNNEL_PORT=4789 TUNNEL_MTU=1450
PROXY_IP=10.89.0.1 AGENT_TUNNEL_IP=10.89.0.2/30
CA=/ca/ca.crt
BUNDLE=/etc/agentlog/ca-bundle.pem
AGENT_USER=agent

# The agent's only link is a VXLAN tunnel to the proxy container, over the agent network.
# On that network the Docker host's bridge (the gateway) is on the agent's own subnet and
# reachable without passing the proxy, and Docker drops, unseen, what the agent sends to
# any address outside the subnet. Through the tunnel every packet reaches the proxy with
# the destination the agent gave it: TCP is redirected to agentlog and recorded, the rest
# dropped and recorded. The network itself keeps one route: to the proxy, for the tunnel.
dev="$(ip -o route get "$PROXY_LINK_IP" | sed -n 's/.* dev \([^ ]*\).*/\1/p')"
here="$(ip -o route get "$PROXY_LINK_IP" | sed -n 's/.* src \([^ ]*\).*/\1/p')"
[ -n "$dev" ] && [ -n "$here" ] || fail "no route to the proxy at $PROXY_LINK_IP"
ip link add "$TUNNEL_IF" type vxlan id "$TUNNEL_VNI" remote "$PROXY_LINK_IP" local "$here" \
  dstport "$TUNNEL_PORT" dev "$dev"
ip address add "$AGENT_TUNNEL_IP" dev "$TUNNEL_IF"
ip link set "$TUNNEL_IF" mtu "$TUNNEL_MTU" up
ip -4 route flush dev "$dev" scope link
ip -4 route flush dev "$dev" scope global
ip route add "$PROXY_LINK_IP/32" dev "$dev" scope link
ip route add default via "$PROXY_IP" dev "$TUNNEL_IF"

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
unset ALL_PROXY all_proxy AGENTLOG_PROXY_IP

if [ $# -eq 0 ]; then
  # Claude Code on the prompt; its reply goes to the terminal and to ./output.
  set -- bash -c 'claude -p "$AGENT_PROMPT" --permission-mode acceptEdits | tee /workspace/agent-reply.txt'
fi

# No capabilities (none inherited, none in the bounding or ambient sets), none to gain.
exec setpriv --reuid="$AGENT_USER" --regid="$AGENT_USER" --init-groups \
  --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs \
  -- env "${env_args[@]}" "$@"
