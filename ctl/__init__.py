"""The client side (import name `kybernetes.ctl`): `client`, the Python client library, and `cli`, kybctl.

kybctl is one user of the client library; the library never imports the CLI, and neither imports the master
or the kubelet (tests/unit/test_layers.py holds the contract).
"""
