"""The third-party clients, each behind bucketrun's own errors: ``amqp`` (aio_pika), ``kube``
(kubernetes_asyncio), ``s3`` (minio). Nothing else imports those libraries (ruff's banned-api rule)."""
