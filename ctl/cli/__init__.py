"""kybctl, with kubectl's habits (import name `kybernetes.ctl.cli`).

`main` is the root group and lists every command; each command is a module of its own (`get`, `describe`,
`apply`, `rollout`, ...). What commands share is split by behaviour: `settings` (global flags and command
declaration), `args` (KIND/NAME arguments), `runner` (running API work through one `Client`, retries on
conflict), `errors` (kubectl's one-line error forms), `output` and `printers` (what is printed).
"""
