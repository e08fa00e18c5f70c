"""The poller process (``bucketrun poll``): for stores without bucket notifications, lists the
services' input paths and publishes MinIO-format events for new object versions, once each."""
