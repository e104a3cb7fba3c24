"""The garbage collector: cascading deletion through ownerReferences (background, foreground, orphan)."""
