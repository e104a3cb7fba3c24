"""The node lifecycle controller: notices lost Nodes, taints them and evicts their pods."""
