"""The proxy side: mitmproxy embedded with agentlog's addons."""
