"""The core shared by the master, the kubelet and the client library (import name `kybernetes.core`).

It holds what every side of a cluster needs and nothing of any one side:

- `api`: the API machinery: the kinds and their resource names, label and field selectors, quantities,
  manifests (YAML/JSON to objects), object helpers, Deployment revision helpers, the one error hierarchy
  with its gRPC code table, and the client contract (`ObjectClient`) with the never-ending watch.
- `machinery`: controller machinery: supervised actors, the informer (list, watch, cache, indexes), the
  keyed rate-limited work queue and back-off.
- `log` (structlog set-up) and `channel` (gRPC channel options and retryable codes).

Layers, checked by tests/unit/test_layers.py: `kybernetes.proto` imports nothing of ours; `core` imports
only `proto`; `master`, `kubelet` and `ctl.client` import `core` and `proto` and not each other; the CLI
(`ctl.cli`) is one user of `ctl.client`.
"""
