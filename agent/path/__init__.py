"""Where on the network path the session is cut: a TCP path trace (scapy) run in a separate worker
process that has CAP_NET_RAW, so that scapy's memory never stays in the agent and a missing capability
only makes the path part `unavailable`."""
