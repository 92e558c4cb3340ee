"""hubbot: the deploy bot of the tess-hubs GitOps repository."""
