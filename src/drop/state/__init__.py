"""Cluster state (key-value buckets); arrives with the node."""
