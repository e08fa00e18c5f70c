"""Developer tools: the local demo and the moto S3 launcher. Never imported by a process."""
