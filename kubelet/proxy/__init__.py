"""The Node's service proxy: Services and Endpoints from the master become iptables rules, as kube-proxy does."""
