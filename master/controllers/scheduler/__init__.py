"""The scheduler: binds pods without a node to the best feasible Node."""
