"""Packet capture: tcpdump on the agent's interface, rotated pcap files, and their index."""
