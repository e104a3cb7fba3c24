"""The master's control loops: scheduler, ReplicaSet, Deployment, node lifecycle and garbage collection.

Every controller is a supervised actor built the same way: shared informers
(`kybernetes.core.machinery.informer`) keep local caches, event handlers put object keys
into a work queue (`kybernetes.core.machinery.workqueue`), and workers reconcile one key
at a time from the caches, level-triggered, so running a sync twice is safe and
a restarted master simply carries on from what etcd holds.
`manager.start_controllers()` assembles them.
"""
