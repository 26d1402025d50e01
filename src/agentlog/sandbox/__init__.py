"""The sandbox: the agent in a network namespace whose only way out is agentlog.

netns.py makes the namespace and its veth pair; firewall.py is the nftables
ruleset applied on the proxy side of that link; bypass.py turns what the
ruleset dropped into bypass event fields.
"""
