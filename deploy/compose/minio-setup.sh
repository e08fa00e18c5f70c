#!/bin/sh
# One-shot MinIO administration that bucketrun itself cannot do (idempotent: safe at every `up`):
# bucketrun's own user, and versioning on the sample service's input bucket. Everything else (the
# services' buckets, their folder markers, the job-records bucket and the bucket notifications to the
# AMQP target BUCKETRUN) is `bucketrun services apply`, run by the `services-apply` container next.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

# bucketrun presigns the jobs' transfers, creates buckets and wires notifications with its own key,
# not the root one (MinIO admin API: no S3 call can create a user).
mc admin user add local "$MINIO_BUCKETRUN_ACCESS_KEY" "$MINIO_BUCKETRUN_SECRET_KEY"
mc admin policy attach local readwrite --user "$MINIO_BUCKETRUN_ACCESS_KEY" 2>/dev/null || true

# Versioning is a bucket property the FDL does not describe, so services apply does not set it: each
# upload gets a versionId and its Job reads exactly that version, even if the key is overwritten before
# the Job starts. Created here for that reason only; services apply finds it and leaves it as it is.
mc mb --ignore-existing local/uploads
mc version enable local/uploads
