"""Leadership among masters (import name `kybernetes.master.leader`).

- `election`: one master at a time runs the control loops, elected through an etcd lease; its claim is a
  fence (master.store.fencing) on every write the loops make.
- `client`: the object client the control loops get while their master leads (every write fenced).
"""
