"""The dispatcher process: MinIO events off RabbitMQ, routed to services, made into Jobs.

``app`` is the composition root (``run_dispatcher``); ``handlers`` turns each message into broker
actions; ``job_creation`` renders and creates one Job. Nothing else imports this package but the roots
above both processes (``bucketrun``).
"""
