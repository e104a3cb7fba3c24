"""The endpoints controller: each Service's Endpoints list the IPs and ports of its ready pods."""
