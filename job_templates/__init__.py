"""What runs inside a Job: the Jinja2 templates (README.md here has their variable contract) and the
in-pod stager (``stager/``, standard library only)."""
