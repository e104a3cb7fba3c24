"""The Deployment controller: ReplicaSets per pod template, rolling updates, Recreate, revisions, progress."""
