"""bucketrun's default Kubernetes templates (Jinja2); see README.md here for the variable contract."""
